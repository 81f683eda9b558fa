package podman_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/podman"
	"github.com/ferrytool/ferry/store/storetest"
)

// TestConformance runs the store conformance suite against podman 5.4 and 5.8, each on this
// machine and on a host over SSH.
func TestConformance(t *testing.T) {
	ssh := storetest.NewSSH(t)
	imgs := storetest.DockerImages(t)
	for _, r := range testenv.Roots {
		t.Run("podman"+r.Podman, func(t *testing.T) {
			t.Parallel()
			conform(t, ssh, imgs, r.StartPodman(t))
		})
	}
}

func conform(t *testing.T, ssh *storetest.SSH, imgs *storetest.Images, pm *testenv.Tool) {
	wrapper := pm.Wrapper(t)
	name := func(tag string) string { return "localhost/" + tag } // podman names short names so
	tg := storetest.Target{
		Ref:     "podman",
		Options: ssh.Options,
		Open:    func(*testing.T) store.Store { return podman.Local(filepath.Join(wrapper, "podman")) },
		State: func(t *testing.T) string {
			return storetest.SortedLines(pm.Run(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
		},
		Check: func(t *testing.T, tag, marker string) {
			got, err := pm.RunErr("run", "--rm", "--network", "none", "--pull=never", name(tag), "cat", "/marker")
			if err != nil || !strings.HasSuffix(got, marker) {
				t.Errorf("podman run %s: %v\n%s\npodman holds:\n%s", tag, err, got, pm.Run(t, "images", "-a"))
			}
		},
	}
	t.Run("local", func(t *testing.T) { storetest.Run(t, imgs, tg) })
	pm.Run(t, "rmi", "-a", "-f")
	tg.Host = ssh.Host(t, "PATH="+wrapper+":/usr/sbin:/usr/bin:/sbin:/bin")
	t.Run("ssh", func(t *testing.T) { storetest.Run(t, imgs, tg) })
}

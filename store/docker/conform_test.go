package docker_test

import (
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/docker"
	"github.com/ferrytool/ferry/store/storetest"
)

// TestConformance runs the store conformance suite against docker 20.10, and 26 and 28 each
// on its classic store and on the containerd image store, each on this machine and on a
// host over SSH. On the containerd image store ferry reaches the daemon's containerd:
// docker 26's where it looks for it (beside the socket), docker 28's where /info says.
func TestConformance(t *testing.T) {
	ssh := storetest.NewSSH(t)
	imgs := storetest.DockerImages(t)
	host := ssh.Host(t)
	for _, f := range testenv.DockerFlavors {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			d := testenv.StartDockerFlavor(t, f)
			c, err := docker.New(d.Host)
			if err != nil {
				t.Fatal(err)
			}
			tg := storetest.Target{
				Ref:       "docker",
				Options:   ssh.Options,
				Open:      func(*testing.T) store.Store { return docker.NewStore(c) },
				Completes: d.ContainerdStore, // ferry reaches its containerd
				State: func(t *testing.T) string {
					return storetest.SortedLines(d.Run(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"))
				},
				Check: func(t *testing.T, tag, marker string) {
					if got := d.Cat(t, tag, "/marker"); got != marker {
						t.Errorf("%s: /marker holds %q, want %q", tag, got, marker)
					}
				},
			}
			t.Run("local", func(t *testing.T) { storetest.Run(t, imgs, tg) })
			if ids := strings.Fields(d.Run(t, "images", "-aq")); len(ids) > 0 {
				d.Run(t, append([]string{"rmi", "-f"}, ids...)...)
			}
			tg.Host = "ssh://" + host + strings.TrimPrefix(d.Host, "unix://")
			t.Run("ssh", func(t *testing.T) { storetest.Run(t, imgs, tg) })
		})
	}
}

package containerd_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/containerd"
	"github.com/ferrytool/ferry/store/storetest"
)

// TestConformance runs the store conformance suite against containerd 1.7 and 2.1,
// namespace k8s.io, each on this machine and on a host over SSH.
func TestConformance(t *testing.T) {
	ssh := storetest.NewSSH(t)
	imgs := storetest.DockerImages(t)
	host := ssh.Host(t)
	for _, r := range testenv.Roots {
		t.Run("containerd"+r.Containerd, func(t *testing.T) {
			t.Parallel()
			conform(t, ssh, imgs, host, r.StartContainerd(t))
		})
	}
}

func conform(t *testing.T, ssh *storetest.SSH, imgs *storetest.Images, host string, c *testenv.Containerd) {
	runs := 0
	tg := storetest.Target{
		Ref:     "containerd:k8s.io",
		Options: ssh.Options,
		Open: func(t *testing.T) store.Store {
			st, err := containerd.New(t.Context(), func(ctx context.Context) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", c.Socket)
			}, "k8s.io", 0)
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		State: func(t *testing.T) string { return storetest.SortedLines(c.Ctr(t, "-n", "k8s.io", "images", "ls")) },
		Check: func(t *testing.T, tag, marker string) {
			runs++
			id := fmt.Sprintf("conform%d", runs)
			got, err := c.CtrErr("-n", "k8s.io", "run", "--rm", containerd.FullName(tag), id, "cat", "/marker")
			if err != nil || !strings.HasSuffix(got, marker) {
				t.Errorf("ctr run %s: %v\n%s", tag, err, got)
			}
		},
	}
	t.Run("local", func(t *testing.T) { storetest.Run(t, imgs, tg) })
	for _, name := range strings.Fields(c.Ctr(t, "-n", "k8s.io", "images", "ls", "-q")) {
		c.Ctr(t, "-n", "k8s.io", "images", "rm", "--sync", name)
	}
	tg.Host = "ssh://" + host + c.Socket
	t.Run("ssh", func(t *testing.T) { storetest.Run(t, imgs, tg) })
}

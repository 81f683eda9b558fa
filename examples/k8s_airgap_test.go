package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestK8sAirgap sends a delta carried across the gap to three "nodes", three containerds
// behind one sshd, with one command, and runs the new image on each.
func TestK8sAirgap(t *testing.T) {
	near := testenv.StartDocker(t)
	var nodes []*testenv.Containerd
	for range 3 {
		nodes = append(nodes, testenv.StartContainerd(t))
	}
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	knownHosts := sshd.KnownHosts(t)
	var hosts []string
	for _, n := range nodes {
		hosts = append(hosts, "ssh://root@"+sshd.Addr+n.Socket)
	}
	sshFlags := []string{"--known-hosts", knownHosts, "-i", key}
	ferry := buildFerry(t)
	env := append(os.Environ(), "HOME="+home, "SSH_AUTH_SOCK=", "DOCKER_HOST="+near.Host)

	// Day one: every node got the base the usual way.
	near.BusyboxImage(t, "base:1", nil)
	base := filepath.Join(t.TempDir(), "base.tar")
	args := []string{"save", "base:1", "-o", base, "-q"}
	day1 := []string{"send", base, "--to", "containerd:k8s.io", "-q"}
	for _, h := range hosts {
		day1 = append(day1, "-H", h)
	}
	for _, a := range [][]string{args, append(day1, sshFlags...)} {
		cmd := exec.Command(ferry, a...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ferry %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}

	near.DeriveImage(t, "app:2", "base:1", map[string]string{"marker": "v2\n", "data": strings.Repeat("x", 1<<20)})
	out := script(t, []string{"FERRY=" + ferry, "HOME=" + home, "SSH_AUTH_SOCK=", "NEAR_DOCKER_HOST=" + near.Host, "NODES=" + strings.Join(hosts, " ")},
		"k8s-airgap/k8s-airgap.sh", append([]string{t.TempDir(), "app:2", "--"}, sshFlags...)...)
	t.Logf("%s", out)
	if !strings.Contains(out, "1 layers left out") {
		t.Errorf("the delta should leave out the base layer:\n%s", out)
	}
	// Each node got the one new layer, not the base: "1 of 2" layers sent.
	if got := len(regexp.MustCompile(`(?m)\s1 of 2\s+loaded app:2`).FindAllString(out, -1)); got != 3 {
		t.Errorf("%d of 3 nodes got only the new layer:\n%s", got, out)
	}
	for i, n := range nodes {
		if got := n.Ctr(t, "-n", "k8s.io", "run", "--rm", "docker.io/library/app:2", "check", "cat", "/marker"); got != "v2\n" {
			t.Errorf("node %d: /marker = %q", i, got)
		}
	}
}

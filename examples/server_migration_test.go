package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestServerMigration moves every image between two sshd+dockerd pairs, then again, when
// nothing is left to send.
func TestServerMigration(t *testing.T) {
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	var dests []string
	var daemons []*testenv.Docker
	var known strings.Builder
	for range 2 {
		d := testenv.StartDocker(t)
		s := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
		dests = append(dests, "ssh://root@"+s.Addr+strings.TrimPrefix(d.Host, "unix://"))
		daemons = append(daemons, d)
		known.WriteString(s.KnownHostsLine() + "\n")
	}
	old, new := daemons[0], daemons[1]
	knownHosts := filepath.Join(home, "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	old.BusyboxImage(t, "base:1", nil)
	old.DeriveImage(t, "web:1", "base:1", map[string]string{"marker": "web\n"})
	old.DeriveImage(t, "db:1", "base:1", map[string]string{"marker": "db\n"})

	env := []string{"FERRY=" + buildFerry(t), "HOME=" + home, "SSH_AUTH_SOCK="}
	migrate := func() string {
		return script(t, env, "server-migration/migrate.sh", dests[0], dests[1], "--known-hosts", knownHosts, "-i", key, "-q")
	}
	out := migrate()
	if !strings.Contains(out, "base:1") || !strings.Contains(out, "web:1") || !strings.Contains(out, "db:1") || !strings.Contains(out, "3 of 3") {
		t.Errorf("first run:\n%s", out)
	}
	for ref, want := range map[string]string{"web:1": "web\n", "db:1": "db\n"} {
		if got := new.Cat(t, ref, "/marker"); got != want {
			t.Errorf("%s: /marker = %q, want %q", ref, got, want)
		}
	}
	if out := migrate(); !strings.Contains(out, "0 of 3") {
		t.Errorf("second run sent layers again:\n%s", out)
	}
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestSendSSHConfig sends to an OCI layout over SFTP on a host that only an ssh config such
// as people write reaches: a Match block names the user, a ProxyCommand runs the real ssh
// client (ssh -W) through a bastion, and a keyword ferry does not follow is overridden
// with -o.
func TestSendSSHConfig(t *testing.T) {
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	target := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	bastion := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	known := filepath.Join(home, "known_hosts")
	os.WriteFile(known, []byte(target.KnownHostsLine()+"\n"+bastion.KnownHostsLine()+"\n"), 0o600)
	config := filepath.Join(home, "config")
	os.WriteFile(config, fmt.Appendf(nil, `
Match originalhost store exec "test -n %%h"
  User root
Host store
  HostName 127.0.0.1
  Port %d
  ProxyCommand ssh -F none -i %s -o UserKnownHostsFile=%s -o BatchMode=yes -p %d -W %%h:%%p root@127.0.0.1
Host *
  User nobody
  CanonicalizeHostname yes
`, target.Port, key, known, bastion.Port), 0o644)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	bundle := writeBundle(t, img, "app:1")
	dir := filepath.Join(t.TempDir(), "images")
	env := []string{"HOME=" + home, "SSH_AUTH_SOCK="}
	send := func(args ...string) result {
		return ferry(t, env, append([]string{"send", bundle, "-H", "store", "--to", "oci:" + dir, "-F", config,
			"--known-hosts", known, "-i", key}, args...)...)
	}

	if r := send(); r.code == 0 || !strings.Contains(r.stderr, "canonicalizehostname") {
		t.Fatalf("CanonicalizeHostname yes: exit %d, want an error naming it:\n%s", r.code, r.stderr)
	}
	r := send("-o", "CanonicalizeHostname=no")
	if r.code != 0 || !strings.Contains(r.stdout, "loaded app:1") {
		t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err != nil || !strings.Contains(string(b), "app:1") {
		t.Errorf("index.json of the layout sent to: %s, %v", b, err)
	}
	if want := fmt.Sprintf("to 127.0.0.1 port %d", target.Port); !strings.Contains(bastion.Log(), want) {
		t.Errorf("the bastion's log shows no forward %s:\n%s", want, bastion.Log())
	}
}

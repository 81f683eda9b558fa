package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/internal/testenv"
)

// TestStoreCombinations runs the verbs that reach every store: bundles and pool bundles
// sent to hosts with no local daemon, load --to podman, and the inventory of every kind, on
// this machine and on a host.
func TestStoreCombinations(t *testing.T) {
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	known := filepath.Join(home, "known_hosts")
	src := testenv.StartDocker(t)
	twoApps(t, src)
	dir := t.TempDir()
	base, delta, app2 := filepath.Join(dir, "base.tar"), filepath.Join(dir, "delta.tar.gz"), filepath.Join(dir, "app2.tar")
	mustFerry(t, dockerEnv(src), "save", "app:1", "-o", base)
	mustFerry(t, dockerEnv(src), "save", "app:2", "--have", base, "-o", delta)
	mustFerry(t, dockerEnv(src), "save", "app:2", "-o", app2)

	// No local daemon: DOCKER_HOST names a socket that is not there.
	env := []string{"HOME=" + home, "SSH_AUTH_SOCK=", "DOCKER_HOST=unix://" + filepath.Join(dir, "none.sock")}
	sshArgs := func(args ...string) []string {
		return append(args, "--known-hosts", known, "-i", key, "--accept-new-host-key")
	}
	a, b := startSSHHost(t, pub), startSSHHost(t, pub)

	t.Run("send bundles to two hosts", func(t *testing.T) {
		out := mustFerry(t, env, sshArgs("send", base, delta, "-H", a.dest, "-H", b.dest)...)
		for _, h := range []*sshHost{a, b} {
			for tag, marker := range map[string]string{"app:1": "one\n", "app:2": "two\n"} {
				if got := h.docker.Cat(t, tag, "/marker"); got != marker {
					t.Errorf("%s on %s: /marker %q, want %q\n%s", tag, h.dest, got, marker, out)
				}
			}
		}
	})

	t.Run("send a pool bundle", func(t *testing.T) {
		pool := filepath.Join(dir, "pool")
		mustFerry(t, nil, "pool", "init", pool)
		mustFerry(t, nil, "pool", "add", pool, app2, "--name", "nightly")
		c := startSSHHost(t, pub)
		mustFerry(t, env, sshArgs("send", "pool:"+pool+":nightly", "-H", c.dest)...)
		if got := c.docker.Cat(t, "app:2", "/marker"); got != "two\n" {
			t.Errorf("app:2 from the pool: /marker %q", got)
		}
	})

	pm := testenv.Podman5(t)
	wrapper := pm.Wrapper(t)
	podmanEnv := append(env[:len(env):len(env)], "PATH="+wrapper+":/usr/sbin:/usr/bin:/sbin:/bin")

	t.Run("load --to podman", func(t *testing.T) {
		mustFerry(t, podmanEnv, "load", "-i", base, "--to", "podman")
		if got := pm.Run(t, "run", "--rm", "--network", "none", "--pull=never", "localhost/app:1", "cat", "/marker"); !strings.HasSuffix(got, "one\n") {
			t.Errorf("podman run app:1: %q", got)
		}
	})

	reg := testenv.StartRegistry(t)
	oci, pool := filepath.Join(dir, "oci"), filepath.Join(dir, "pool")
	mustFerry(t, nil, "load", "-i", base, "--to", "oci:"+oci)
	mustFerry(t, nil, "load", "-i", base, "--to", "registry:"+reg.Addr+"/mirror")
	podmanHost := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub},
		SetEnv: []string{"PATH=" + wrapper + ":/usr/sbin:/usr/bin:/sbin:/bin"}})
	for _, c := range []struct {
		name, from, host string
		env              []string
		complete         bool
	}{
		{"docker", "docker", "", dockerEnv(src), false},
		{"docker on a host", "docker", a.dest, env, false},
		{"podman", "podman", "", podmanEnv, true},
		{"podman on a host", "podman", "root@" + podmanHost.Addr, env, true},
		{"oci", "oci:" + oci, "", env, false},
		{"oci on a host", "oci:" + oci, "root@" + a.sshd.Addr, env, false},
		{"pool", "pool:" + pool, "", env, false},
		{"registry", "registry:" + reg.Addr + "/mirror", "", env, false},
	} {
		t.Run("inventory "+c.name, func(t *testing.T) {
			args := []string{"inventory", "--from", c.from, "-o", "-"}
			if c.host != "" {
				args = sshArgs(append(args, "-H", c.host)...)
			}
			var inv dedupe.Inventory
			if err := json.Unmarshal([]byte(mustFerry(t, c.env, args...)), &inv); err != nil {
				t.Fatal(err)
			}
			if inv.Complete != c.complete {
				t.Errorf("complete %v, want %v", inv.Complete, c.complete)
			}
			if c.complete {
				if len(inv.Images) == 0 {
					t.Errorf("no images held: %+v", inv)
				}
				return
			}
			if len(inv.DiffIDs) < 2 && len(inv.Blobs) < 2 {
				t.Errorf("the inventory names fewer than the two layers of app:1: %+v", inv)
			}
		})
	}
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// sshHost is a throwaway dockerd behind a throwaway sshd, and how ferry names it: the sshd
// runs as root on this machine, so the "remote" socket is the dockerd's own.
type sshHost struct {
	docker *testenv.Docker
	sshd   *testenv.SSHD
	dest   string
}

func startSSHHost(t *testing.T, key ssh.PublicKey) *sshHost {
	t.Helper()
	h := &sshHost{docker: testenv.StartDocker(t), sshd: testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{key}})}
	h.dest = "ssh://root@" + h.sshd.Addr + socketPath(h.docker)
	return h
}

func socketPath(d *testenv.Docker) string { return strings.TrimPrefix(d.Host, "unix://") }

func TestSend(t *testing.T) {
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	src := testenv.StartDocker(t)
	twoApps(t, src)
	a, b := startSSHHost(t, pub), startSSHHost(t, pub)
	known := filepath.Join(home, "known_hosts")
	env := []string{"HOME=" + home, "SSH_AUTH_SOCK=", "DOCKER_HOST=" + src.Host}
	send := func(args ...string) result {
		return ferry(t, env, append([]string{"send", "--known-hosts", known, "-i", key}, args...)...)
	}

	t.Run("unknown host", func(t *testing.T) {
		r := send("app:1", "-H", a.dest)
		if r.code != 1 || !strings.Contains(r.stderr, "SHA256:") || !strings.Contains(r.stderr, "--accept-new-host-key") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("accept new host key, cold send", func(t *testing.T) {
		r := send("app:1", "-H", a.dest, "--accept-new-host-key")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, a.dest) || !strings.Contains(r.stdout, "2 of 2") || !strings.Contains(r.stdout, "loaded app:1") {
			t.Errorf("summary:\n%s", r.stdout)
		}
		if got := a.docker.Cat(t, "app:1", "/marker"); got != "one\n" {
			t.Errorf("/marker = %q", got)
		}
		if b, _ := os.ReadFile(known); !strings.Contains(string(b), fmt.Sprintf("[127.0.0.1]:%d ", a.sshd.Port)) {
			t.Errorf("known_hosts: %q", b)
		}
	})

	t.Run("changed host key", func(t *testing.T) {
		other, _ := testenv.NewKey(t, t.TempDir(), "other", "")
		changed := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(changed, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", a.sshd.Port, ssh.MarshalAuthorizedKey(other))), 0o600)
		r := ferry(t, env, "send", "--known-hosts", changed, "-i", key, "--accept-new-host-key", "app:2", "-H", a.dest)
		if r.code != 1 || !strings.Contains(r.stderr, "host key changed") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		_, stranger := testenv.NewKey(t, t.TempDir(), "stranger", "")
		r := ferry(t, env, "send", "--known-hosts", known, "-i", stranger, "app:2", "-H", a.dest)
		if r.code != 1 || !strings.Contains(r.stderr, "accepted none of the keys") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("ssh config alias, two hosts, one down", func(t *testing.T) {
		os.WriteFile(known, []byte(a.sshd.KnownHostsLine()+"\n"+b.sshd.KnownHostsLine()+"\n"), 0o600)
		config := filepath.Join(home, "config")
		os.WriteFile(config, []byte(fmt.Sprintf("Host web-b\n  HostName 127.0.0.1\n  Port %d\n  User root\n  IdentityFile %s\n",
			b.sshd.Port, key)), 0o644)
		down := "root@127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		r := send("-F", config, "--progress", "json", "app:1", "app:2", "-H", a.dest, "-H", "ssh://web-b"+socketPath(b.docker), "-H", down)
		if r.code != 4 || !strings.Contains(r.stderr, "1 of 3 hosts failed: "+down) {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		// a had the base and app:1: only app:2's layer went there; b got all three.
		for _, want := range []string{"1 of 3", "3 of 3", down} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("summary lacks %q:\n%s", want, r.stdout)
			}
		}
		for _, h := range []*sshHost{a, b} {
			if got := h.docker.Cat(t, "app:2", "/marker"); got != "two\n" {
				t.Errorf("/marker = %q", got)
			}
		}
		hosts := map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(r.stderr))
		for sc.Scan() {
			var ev struct{ Action, Event string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "done" {
				hosts[ev.Action] = true
			}
		}
		if len(hosts) != 4 {
			t.Errorf("JSON progress ended for %v, want the source and three hosts:\n%s", hosts, r.stderr)
		}
	})

	t.Run("to an OCI layout", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "images")
		host := "root@" + a.sshd.Addr
		r := send("app:1", "-H", host, "--to", "oci:"+dir)
		if r.code != 0 || !strings.Contains(r.stdout, "2 of 2") || !strings.Contains(r.stdout, "loaded app:1") {
			t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
		run(t, "skopeo", "inspect", "oci:"+dir+":app:1") // the full name, as docker names the image
		if r := send("app:1", "-H", host, "--to", "oci:"+dir); r.code != 0 || !strings.Contains(r.stdout, "0 of 2") {
			t.Fatalf("sending again: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("invalid references", func(t *testing.T) {
		for _, args := range [][]string{{"Bad:Ref", "-H", a.dest}, {"app:1", "-H", "-oProxyCommand=x"}, {"app:1"},
			{"app:1", "-H", a.dest, "--to", "podman"}, {"app:1", "-H", "web1", "--to", "oci:"},
			{"app:1", "-H", a.dest, "--compress", "brotli"}} {
			if r := send(args...); r.code != 2 {
				t.Errorf("send %v: exit %d, want 2: %s", args, r.code, r.stderr)
			}
		}
	})
}

package sshconn

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseDestination(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Destination
	}{
		{"web1", Destination{Host: "web1"}},
		{"root@10.0.0.5", Destination{User: "root", Host: "10.0.0.5"}},
		{"deploy@web1.example.com:2222", Destination{User: "deploy", Host: "web1.example.com", Port: 2222}},
		{"[::1]:2222", Destination{Host: "::1", Port: 2222}},
		{"::1", Destination{Host: "::1"}},
		{"ssh://web1", Destination{Host: "web1"}},
		{"ssh://root@web1:22/", Destination{User: "root", Host: "web1", Port: 22}},
		{"ssh://me@web1/run/user/1000/docker.sock", Destination{User: "me", Host: "web1", Path: "/run/user/1000/docker.sock"}},
		{"ssh://[fe80::1]:22/var/run/docker.sock", Destination{Host: "fe80::1", Port: 22, Path: "/var/run/docker.sock"}},
	} {
		got, err := ParseDestination(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDestination(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if again, err := ParseDestination(got.String()); err != nil || again != got {
			t.Errorf("ParseDestination(%q.String() = %q) = %+v, %v", c.in, got.String(), again, err)
		}
	}
	for _, in := range []string{
		"", "-oProxyCommand=x", "root@-host", "-l@host", "host:0", "host:65536", "host:ssh", "a b", "host;rm",
		"$(id)@host", "user@", "@host", "fe80::1:22x", "[::1", "[web1]:22", "[::1]x", "tcp://host",
		"ssh://host/../etc", "ssh://host/rel/../x", "ssh://host/a\nb", "host/path", "user@host@x:",
	} {
		if d, err := ParseDestination(in); !errors.Is(err, ErrInvalidDestination) {
			t.Errorf("ParseDestination(%q) = %+v, %v; want ErrInvalidDestination", in, d, err)
		}
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte(`
Host web1
  HostName 10.0.0.5
  Port 2222
  User deploy
  IdentityFile ~/keys/%r@%h
  IdentityFile /etc/keys/shared
  ProxyJump bastion,root@inner:2200
  ConnectTimeout 7
Host *.lan
  HostName %h.example.com
  UserKnownHostsFile ~/lan_known_hosts /etc/lan_hosts
Host *
  ProxyJump none
`), 0o644)
	s, err := loadSettings(Config{ConfigFile: config, Identities: []string{"/cli/key"}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.resolve(Destination{Host: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []identity{{"/cli/key", true}, {filepath.Join(dir, "keys/deploy@10.0.0.5"), false}, {"/etc/keys/shared", false}}
	if h.addr != "10.0.0.5:2222" || h.user != "deploy" || h.proxyJump != "bastion,root@inner:2200" ||
		h.timeout != 7*time.Second || len(h.identities) != 3 || h.identities[0] != want[0] || h.identities[1] != want[1] ||
		h.identities[2] != want[2] || h.knownHosts[0] != filepath.Join(dir, ".ssh/known_hosts") {
		t.Errorf("web1: %+v", h)
	}

	// The destination's own user and port win over the config's.
	h, _ = s.resolve(Destination{User: "root", Host: "web1", Port: 22})
	if h.addr != "10.0.0.5:22" || h.user != "root" {
		t.Errorf("root@web1:22: %+v", h)
	}

	h, _ = s.resolve(Destination{Host: "db.lan"})
	if h.addr != "db.lan.example.com:22" || h.proxyJump != "" || h.timeout != DefaultConnectTimeout ||
		len(h.knownHosts) != 2 || h.knownHosts[0] != filepath.Join(dir, "lan_known_hosts") ||
		h.identities[1].path != filepath.Join(dir, ".ssh/id_ed25519") {
		t.Errorf("db.lan: %+v", h)
	}

	// Config.KnownHosts replaces the user's files.
	s, _ = loadSettings(Config{ConfigFile: "none", KnownHosts: "/tmp/kh"})
	if h, _ = s.resolve(Destination{Host: "web1"}); h.addr != "web1:22" || h.knownHosts[0] != "/tmp/kh" || len(h.knownHosts) != 1 {
		t.Errorf("-F none: %+v", h)
	}

	if _, err := loadSettings(Config{ConfigFile: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing -F file was accepted")
	}
}

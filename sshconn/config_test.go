package sshconn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/internal/testenv"
)

// eachResolver runs test with the settings `ssh -G` gives and with those ferry's own
// parser gives, for when no ssh client is installed.
func eachResolver(t *testing.T, test func(t *testing.T)) {
	t.Helper()
	t.Run("ssh -G", func(t *testing.T) {
		client := sshClient
		sshClient = testenv.Require(t, "ssh")
		t.Cleanup(func() { sshClient = client })
		test(t)
	})
	t.Run("parser", func(t *testing.T) {
		client := sshClient
		sshClient = ""
		t.Cleanup(func() { sshClient = client })
		test(t)
	})
}

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	os.MkdirAll(filepath.Join(dir, ".ssh"), 0o755)
	os.WriteFile(filepath.Join(dir, ".ssh", "lan.conf"), []byte("Host *.lan\n  HostName %h.example.com\n"), 0o644)
	config := writeConfig(t, dir, `
Host web1
  HostName 10.0.0.5
  Port 2222
  User deploy
  IdentityFile ~/keys/%r@%h
  IdentityFile /etc/keys/shared
  ProxyJump bastion,root@inner:2200
  ConnectTimeout 7
  ServerAliveInterval 30
  ServerAliveCountMax 5
Host *.lan
  UserKnownHostsFile /lan/known_hosts /etc/lan_hosts
  ProxyCommand nc -q0 %h %p
  Include lan.conf
Host *
  ProxyJump none
  StrictHostKeyChecking accept-new
`)
	eachResolver(t, func(t *testing.T) {
		cfg := Config{ConfigFile: config, Identities: []string{"/cli/key"}}
		h, err := resolve(context.Background(), cfg, Destination{Host: "web1"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := []identity{{"/cli/key", true}, {filepath.Join(dir, "keys/deploy@10.0.0.5"), false}, {"/etc/keys/shared", false}}
		if h.addr != "10.0.0.5:2222" || h.user != "deploy" || h.proxyJump != "bastion,root@inner:2200" || h.proxyCommand != "" ||
			h.timeout != 7*time.Second || fmt.Sprint(h.identities) != fmt.Sprint(want) || !h.acceptNew ||
			h.aliveInterval != 30*time.Second || h.aliveCountMax != 5 || h.network != "tcp" {
			t.Errorf("web1: %+v", h)
		}

		// The destination's own user and port win over the config's, and so do -o options.
		h, _ = resolve(context.Background(), cfg, Destination{User: "root", Host: "web1", Port: 22}, []string{"HostName=10.0.0.6", "AddressFamily inet"})
		if h.addr != "10.0.0.6:22" || h.user != "root" || h.network != "tcp4" {
			t.Errorf("root@web1:22 -o HostName=10.0.0.6: %+v", h)
		}

		h, err = resolve(context.Background(), cfg, Destination{Host: "db.lan"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.addr != "db.lan.example.com:22" || h.proxyJump != "" || h.proxyCommand != "nc -q0 db.lan.example.com 22" ||
			h.timeout != DefaultConnectTimeout || h.aliveInterval != defaultAliveInterval || h.aliveCountMax != 3 ||
			strings.Join(h.knownHosts, " ") != "/lan/known_hosts /etc/lan_hosts" ||
			h.identities[1].path != filepath.Join(dir, ".ssh/id_rsa") {
			t.Errorf("db.lan: %+v", h)
		}

		// Config.KnownHosts replaces the user's files; ssh's defaults hold without a config.
		cfg = Config{ConfigFile: "none", KnownHosts: "/tmp/kh"}
		if h, _ = resolve(context.Background(), cfg, Destination{Host: "web1"}, nil); h.addr != "web1:22" ||
			h.knownHosts[0] != "/tmp/kh" || len(h.knownHosts) != 1 || h.acceptNew {
			t.Errorf("-F none: %+v", h)
		}
		if _, err := resolve(context.Background(), Config{ConfigFile: filepath.Join(dir, "missing")}, Destination{Host: "x"}, nil); err == nil {
			t.Error("a missing -F file was accepted")
		}
		if _, err := resolve(context.Background(), Config{ConfigFile: "none"}, Destination{Host: "x"}, []string{"Prot=22"}); err == nil ||
			!strings.Contains(strings.ToLower(err.Error()), "prot") {
			t.Errorf("-o Prot=22: %v, want an error naming it", err)
		}
	})
}

func TestResolveMatch(t *testing.T) {
	testenv.Require(t, "sh") // Match exec
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	flag := filepath.Join(dir, "on-vpn")
	config := writeConfig(t, dir, fmt.Sprintf(`
Match originalhost build* exec "test -e %[1]s"
  User vpn
Match host 10.1.*,!10.1.0.9 user *,!root
  IdentityFile ~/.ssh/lab
Match localuser nobody-here
  Port 1
Host build1
  HostName 10.1.0.1
Host build9
  HostName 10.1.0.9
Match final host 10.1.0.1
  Port 2201
Match all
  User ci
`, flag))
	eachResolver(t, func(t *testing.T) {
		os.Remove(flag)
		cfg := Config{ConfigFile: config}
		get := func(d Destination) host {
			t.Helper()
			h, err := resolve(context.Background(), cfg, d, nil)
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		// Match host sees the HostName set before it only in the final pass.
		if h := get(Destination{Host: "build1"}); h.user != "ci" || h.addr != "10.1.0.1:2201" || h.identities[0].path != filepath.Join(dir, ".ssh/lab") {
			t.Errorf("build1: %+v", h)
		}
		if h := get(Destination{Host: "build9"}); h.user != "ci" || h.addr != "10.1.0.9:22" || h.identities[0].path == filepath.Join(dir, ".ssh/lab") {
			t.Errorf("build9: %+v", h)
		}
		if h := get(Destination{User: "root", Host: "build1"}); h.user != "root" || h.identities[0].path == filepath.Join(dir, ".ssh/lab") {
			t.Errorf("root@build1: %+v", h)
		}
		os.WriteFile(flag, nil, 0o644)
		if h := get(Destination{Host: "build1"}); h.user != "vpn" {
			t.Errorf("build1 with Match exec true: %+v", h)
		}
	})
}

// TestParseConfig covers what only ferry's parser does: criteria OpenSSH's newer versions
// know, and errors.
func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	config := writeConfig(t, dir, `
Match originalhost lab* localnetwork 10.0.0.0/8
  Port 2
Host tagged
  Tag ci
Match tagged ci
  Port 3
Host *
  IgnoreUnknown UseFuture*
  UseFutureThing yes
`)
	parse := func(host string, options ...string) (settings, error) {
		return parseConfig(context.Background(), Config{ConfigFile: config}, Destination{Host: host}, options)
	}
	if s, err := parse("web1"); err != nil || s.get("port") != "22" {
		t.Errorf("a Match with an unknown criterion that does not apply: %v, %v", s, err)
	}
	if _, err := parse("lab1"); err == nil || !strings.Contains(err.Error(), "localnetwork") {
		t.Errorf("a Match with an unknown criterion that applies: %v, want an error naming it", err)
	}
	if s, err := parse("tagged"); err != nil || s.get("port") != "3" {
		t.Errorf("Match tagged: %v, %v", s, err)
	}
	for _, bad := range []string{"Bogus=1", "Host=x", "User", `ProxyCommand "x`} {
		if _, err := parse("web1", bad); err == nil {
			t.Errorf("-o %s accepted", bad)
		}
	}
	writeConfig(t, dir, "Host *\n  Bogus yes\n")
	if _, err := parse("web1"); err == nil || !strings.Contains(err.Error(), "bogus") || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("an unknown keyword: %v", err)
	}
}

func TestRefused(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	config := writeConfig(t, dir, "Host *.corp\n  CanonicalizeHostname yes\n  CanonicalDomains corp\nHost pinned\n  BindAddress 10.0.0.1\n")
	eachResolver(t, func(t *testing.T) {
		cfg := Config{ConfigFile: config}
		_, err := resolve(context.Background(), cfg, Destination{Host: "a.corp"}, nil)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "canonicalizehostname") {
			t.Errorf("CanonicalizeHostname yes: %v", err)
		}
		if _, err := resolve(context.Background(), cfg, Destination{Host: "a.corp"}, []string{"CanonicalizeHostname=no"}); err != nil {
			t.Errorf("-o CanonicalizeHostname=no: %v", err)
		}
		if _, err := resolve(context.Background(), cfg, Destination{Host: "pinned"}, nil); !errors.Is(err, ErrUnsupported) ||
			!strings.Contains(err.Error(), "bindaddress") {
			t.Errorf("BindAddress: %v", err)
		}
		if _, err := resolve(context.Background(), cfg, Destination{Host: "other"}, nil); err != nil {
			t.Errorf("a host the refused keywords do not apply to: %v", err)
		}
	})
}

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{`a b`, []string{"a", "b"}},
		{`"a b" c`, []string{"a b", "c"}},
		{`'a "b"' c\ d`, []string{`a "b"`, "c d"}},
		{`a # comment`, []string{"a"}},
		{`a#b`, []string{"a#b"}},
		{`ssh -W %h:%p "bastion"`, []string{"ssh", "-W", "%h:%p", "bastion"}},
	} {
		if got, err := splitArgs(c.in); err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

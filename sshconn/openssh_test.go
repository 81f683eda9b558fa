package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// These tests connect as people configure OpenSSH: certificates made by ssh-keygen -s,
// the real ssh client as a ProxyCommand, Match blocks, chains of jump hosts.

func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("SSH_AUTH_SOCK", "")
	userCAPub, userCA := testenv.NewKey(t, dir, "user_ca", "")
	hostCAPub, hostCA := testenv.NewKey(t, dir, "host_ca", "")
	// No authorized_keys: only certificates log in.
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{UserCA: userCAPub, HostCA: hostCA})
	_, key := testenv.NewKey(t, dir, "id", "")
	testenv.Sign(t, userCA, key, false, "root")
	ca := fmt.Sprintf("@cert-authority [127.0.0.1]:%d %s", sshd.Port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostCAPub))))
	knownHosts := func(lines ...string) string {
		path := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		return path
	}
	d := Destination{User: "root", Host: "127.0.0.1", Port: sshd.Port}
	cfg := Config{ConfigFile: "none", KnownHosts: knownHosts(ca), Identities: []string{key}}

	t.Run("certificate beside the key, host certificate", func(t *testing.T) {
		if _, err := dial(t, d, cfg); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sshd.Log(), "ID ferry-test") {
			t.Errorf("sshd did not log a certificate login:\n%s", sshd.Log())
		}
	})

	t.Run("CertificateFile", func(t *testing.T) {
		_, other := testenv.NewKey(t, dir, "other", "")
		issued := filepath.Join(dir, "issued.pub")
		os.Rename(testenv.Sign(t, userCA, other, false, "root"), issued)
		cfg := cfg
		cfg.ConfigFile = writeConfig(t, t.TempDir(), "Host *\n  CertificateFile "+issued+"\n")
		cfg.Identities = []string{other}
		eachResolver(t, func(t *testing.T) {
			if _, err := dial(t, d, cfg); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("certificate from the agent", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", startAgent(t, key)) // ssh-add adds key-cert.pub with the key
		cfg := cfg
		cfg.Identities = nil
		if _, err := dial(t, d, cfg); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no certificate", func(t *testing.T) {
		_, plain := testenv.NewKey(t, dir, "plain", "")
		cfg := cfg
		cfg.Identities = []string{plain}
		if _, err := dial(t, d, cfg); !errors.Is(err, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth", err)
		}
	})

	t.Run("host certificate of another authority", func(t *testing.T) {
		cfg := cfg
		cfg.KnownHosts = knownHosts()
		_, err := dial(t, d, cfg)
		var hke *HostKeyError
		if !errors.Is(err, ErrUnknownHostKey) || !errors.As(err, &hke) || !keyEqual(hke.Key, sshd.HostKey) {
			t.Fatalf("got %v, want ErrUnknownHostKey for the certificate's plain key", err)
		}
	})

	t.Run("host certificate for another name", func(t *testing.T) {
		cfg := cfg
		cfg.ConfigFile = writeConfig(t, t.TempDir(), "Host *\n  HostKeyAlias elsewhere\n")
		cfg.KnownHosts = knownHosts("@cert-authority elsewhere " + string(ssh.MarshalAuthorizedKey(hostCAPub)))
		if _, err := dial(t, d, cfg); err == nil || !strings.Contains(err.Error(), "not valid") || !strings.Contains(err.Error(), "elsewhere") {
			t.Fatalf("got %v, want a certificate that does not name the host refused", err)
		}
	})

	revoke := func(k ssh.PublicKey) string {
		return "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	}
	for name, known := range map[string]string{
		"revoked host key":  knownHosts(ca, revoke(sshd.HostKey)),
		"revoked authority": knownHosts(ca, revoke(hostCAPub)),
		"revoked plain key": knownHosts(sshd.KnownHostsLine(), revoke(sshd.HostKey)),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := cfg
			cfg.KnownHosts, cfg.AcceptNewHostKey = known, true
			_, err := dial(t, d, cfg)
			if !errors.Is(err, ErrHostKeyRevoked) || !strings.Contains(err.Error(), known+":2") {
				t.Fatalf("got %v, want ErrHostKeyRevoked naming %s:2", err, known)
			}
		})
	}
}

// jumpServer is a second sshd that lets s's key in, and which s's known_hosts knows.
func (s *server) jumpServer(t *testing.T) *testenv.SSHD {
	t.Helper()
	key, err := ssh.ParsePrivateKey(mustRead(t, s.key))
	if err != nil {
		t.Fatal(err)
	}
	jump := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	f, err := os.OpenFile(s.known, os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(jump.KnownHostsLine() + "\n")
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return jump
}

func TestProxyCommand(t *testing.T) {
	target := startServer(t, testenv.SSHDOptions{})
	jump := target.jumpServer(t)
	pidFile := filepath.Join(target.dir, "proxy.pid")
	// The real ssh client as the proxy; the shell records its pid before it becomes ssh.
	proxy := fmt.Sprintf(`sh -c 'echo $$ > %s; exec "$@"' proxy ssh -F none -i %s -o UserKnownHostsFile=%s `+
		`-o StrictHostKeyChecking=yes -o BatchMode=yes -p %d -W %%h:%%p root@127.0.0.1`, pidFile, target.key, target.known, jump.Port)
	cfg := target.cfg
	cfg.ConfigFile = writeConfig(t, target.dir, fmt.Sprintf("Host target\n  HostName 127.0.0.1\n  Port %d\n  User root\n  ProxyCommand %s\n",
		target.sshd.Port, proxy))

	eachResolver(t, func(t *testing.T) {
		c, err := dial(t, Destination{Host: "target"}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		echoes(t, c, echoSocket(t))
		if want := fmt.Sprintf("to 127.0.0.1 port %d", target.sshd.Port); !strings.Contains(jump.Log(), want) {
			t.Errorf("the jump host's log does not show a forward %s:\n%s", want, jump.Log())
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(mustRead(t, pidFile))))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("the ProxyCommand (pid %d) outlived the connection: %v", pid, err)
		}
	})

	t.Run("host refuses the key", func(t *testing.T) {
		_, stranger := testenv.NewKey(t, t.TempDir(), "stranger", "")
		cfg := cfg
		cfg.Identities = []string{stranger}
		if _, err := dial(t, Destination{Host: "target"}, cfg); !errors.Is(err, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth: the ProxyCommand did its part", err)
		}
	})

	t.Run("fails", func(t *testing.T) {
		cfg := cfg
		var stderr bytes.Buffer
		cfg.Stderr = &stderr
		cfg.Options = []string{`ProxyCommand sh -c "echo cannot reach %h >&2; exit 3"`}
		_, err := dial(t, Destination{Host: "target"}, cfg)
		if !errors.Is(err, ErrProxyCommand) || !strings.Contains(err.Error(), "cannot reach 127.0.0.1") ||
			!strings.Contains(err.Error(), "exit status 3") {
			t.Fatalf("got %v, want ErrProxyCommand with its status and stderr", err)
		}
		if !strings.Contains(stderr.String(), "cannot reach 127.0.0.1") {
			t.Errorf("the command's stderr was not shown: %q", stderr.String())
		}
	})
}

func TestProxyJumpChain(t *testing.T) {
	target := startServer(t, testenv.SSHDOptions{})
	hop1, hop2 := target.jumpServer(t), target.jumpServer(t)
	cfg := target.cfg
	cfg.ConfigFile = writeConfig(t, target.dir, fmt.Sprintf(`
Host target
  ProxyJump hop2
Host chain
  ProxyJump hop1,hop2
Host target chain
  HostName 127.0.0.1
  Port %d
Host hop2
  HostName 127.0.0.1
  Port %d
  ProxyJump hop1
Host hop1
  HostName 127.0.0.1
  Port %d
Host *
  User root
`, target.sshd.Port, hop2.Port, hop1.Port))
	eachResolver(t, func(t *testing.T) {
		// target: hop2's own ProxyJump is followed; chain: both hops named at once.
		for _, name := range []string{"target", "chain"} {
			c, err := dial(t, Destination{Host: name}, cfg)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			echoes(t, c, echoSocket(t))
		}
		if want := fmt.Sprintf("to 127.0.0.1 port %d", hop2.Port); !strings.Contains(hop1.Log(), want) {
			t.Errorf("hop1's log shows no forward %s:\n%s", want, hop1.Log())
		}
		if want := fmt.Sprintf("to 127.0.0.1 port %d", target.sshd.Port); !strings.Contains(hop2.Log(), want) {
			t.Errorf("hop2's log shows no forward %s:\n%s", want, hop2.Log())
		}
	})
}

func TestMatchUserAndKey(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("SSH_AUTH_SOCK", "")
	labPub, lab := testenv.NewKey(t, dir, "lab", "")
	_, root := testenv.NewKey(t, dir, "root", "")
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{labPub}, User: "ferrytest"})
	onLab := filepath.Join(dir, "on-lab")
	cfg := Config{KnownHosts: sshd.KnownHosts(t), ConfigFile: writeConfig(t, dir, fmt.Sprintf(`
Match originalhost box exec "test -e %s"
  User ferrytest
  IdentityFile %s
Host box
  HostName 127.0.0.1
  Port %d
  User root
  IdentityFile %s
`, onLab, lab, sshd.Port, root))}
	eachResolver(t, func(t *testing.T) {
		os.Remove(onLab)
		if _, err := dial(t, Destination{Host: "box"}, cfg); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), root) {
			t.Fatalf("without the Match block: got %v, want ErrAuth offering %s", err, root)
		}
		os.WriteFile(onLab, nil, 0o644)
		c, err := dial(t, Destination{Host: "box"}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := c.Run(context.Background(), "id -un", nil); err != nil || strings.TrimSpace(out) != "ferrytest" {
			t.Errorf("logged in as %q, %v; want ferrytest", out, err)
		}
	})
}

func TestOptions(t *testing.T) {
	s := startServer(t, testenv.SSHDOptions{})
	cfg := s.cfg
	// The config names a wrong port and asks for something ferry does not do.
	cfg.ConfigFile = writeConfig(t, s.dir, "Host box\n  HostName 127.0.0.1\n  Port 1\n  User root\n  ProxyUseFdpass yes\n")
	eachResolver(t, func(t *testing.T) {
		_, err := dial(t, Destination{Host: "box"}, cfg)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "proxyusefdpass") {
			t.Fatalf("got %v, want ErrUnsupported naming proxyusefdpass", err)
		}
		cfg := cfg
		cfg.Options = []string{"ProxyUseFdpass=no", fmt.Sprintf("Port %d", s.sshd.Port)}
		if _, err := dial(t, Destination{Host: "box"}, cfg); err != nil {
			t.Fatalf("-o %v: %v", cfg.Options, err)
		}
	})
}

func TestServerAlive(t *testing.T) {
	s := startServer(t, testenv.SSHDOptions{})
	cfg := s.cfg
	cfg.Options = []string{"ServerAliveInterval=1", "ServerAliveCountMax=2"}
	c, err := dial(t, s.dest("root"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.sshd.FreezeSessions()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Run(ctx, "true", nil); !errors.Is(err, ErrKeepAlive) {
		t.Fatalf("a host that stopped answering: got %v, want ErrKeepAlive", err)
	}
}

package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// server is a throwaway sshd with a key it accepts, a known_hosts file that knows it
// and a Config that uses both and nothing of the user's.
type server struct {
	sshd  *testenv.SSHD
	dir   string
	key   string
	known string
	cfg   Config
}

func startServer(t *testing.T, opts testenv.SSHDOptions) *server {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir) // no ~/.ssh of the machine's
	t.Setenv("SSH_AUTH_SOCK", "")
	pub, key := testenv.NewKey(t, dir, "id", "")
	opts.AuthorizedKeys = append(opts.AuthorizedKeys, pub)
	sshd := testenv.StartSSHD(t, opts)
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(sshd.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{ConfigFile: "none", KnownHosts: known, Identities: []string{key}}
	return &server{sshd: sshd, dir: dir, key: key, known: known, cfg: cfg}
}

func (s *server) dest(user string) Destination {
	return Destination{User: user, Host: "127.0.0.1", Port: s.sshd.Port}
}

func dial(t *testing.T, d Destination, cfg Config) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, d, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// echoSocket serves a unix socket at path (in a directory anyone may enter) that echoes
// what it reads.
func echoSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ferry-sock-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "echo.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(conn, conn); conn.Close() }()
		}
	}()
	return path
}

// echoes checks that a connection to an echo socket works.
func echoes(t *testing.T, c *Client, path string) {
	t.Helper()
	conn, err := c.DialUnix(context.Background(), path)
	if err != nil {
		t.Fatalf("DialUnix: %v", err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

func TestDialUnix(t *testing.T) {
	s := startServer(t, testenv.SSHDOptions{User: "ferrytest"})
	sock := echoSocket(t)
	// The server also has an ECDSA host key, which x/crypto would ask for first: the
	// connection works only because the algorithm known_hosts records is negotiated.
	c, err := dial(t, s.dest("root"), s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	echoes(t, c, sock)

	_, err = c.DialUnix(context.Background(), filepath.Join(filepath.Dir(sock), "missing.sock"))
	if !errors.Is(err, ErrNoSocket) {
		t.Errorf("missing socket: %v", err)
	}

	stale := filepath.Join(filepath.Dir(sock), "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err = c.DialUnix(context.Background(), stale); !errors.Is(err, ErrSocketRefused) {
		t.Errorf("socket nothing listens on: %v", err)
	}

	// A user who may not write to the socket.
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = dial(t, s.dest("ferrytest"), s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.DialUnix(context.Background(), sock)
	if !errors.Is(err, ErrSocketDenied) || !strings.Contains(err.Error(), "ferrytest") {
		t.Errorf("socket the user may not use: %v", err)
	}
}

func TestHostKeys(t *testing.T) {
	s := startServer(t, testenv.SSHDOptions{})
	fingerprint := ssh.FingerprintSHA256(s.sshd.HostKey)

	t.Run("unknown", func(t *testing.T) {
		cfg := s.cfg
		cfg.KnownHosts = filepath.Join(t.TempDir(), "none_yet")
		_, err := dial(t, s.dest("root"), cfg)
		var hke *HostKeyError
		if !errors.Is(err, ErrUnknownHostKey) || !errors.As(err, &hke) {
			t.Fatalf("got %v, want ErrUnknownHostKey", err)
		}
		msg := err.Error()
		offered := ssh.FingerprintSHA256(hke.Key)
		for _, want := range []string{offered, hke.Key.Type(), fmt.Sprintf("ssh-keyscan -p %d 127.0.0.1", s.sshd.Port), "--accept-new-host-key", cfg.KnownHosts} {
			if !strings.Contains(msg, want) {
				t.Errorf("message lacks %q: %s", want, msg)
			}
		}
		if _, err := os.Stat(cfg.KnownHosts); err == nil {
			t.Error("an unknown host key was recorded without AcceptNewHostKey")
		}
	})

	t.Run("accept new", func(t *testing.T) {
		cfg := s.cfg
		cfg.KnownHosts = filepath.Join(t.TempDir(), "new", "known_hosts")
		cfg.AcceptNewHostKey = true
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(cfg.KnownHosts)
		if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); err != nil || len(lines) != 1 ||
			!strings.HasPrefix(lines[0], fmt.Sprintf("[127.0.0.1]:%d ", s.sshd.Port)) {
			t.Fatalf("known_hosts after accepting: %q, %v", b, err)
		}
		cfg.AcceptNewHostKey = false
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatalf("the accepted key is not known: %v", err)
		}
	})

	t.Run("HostKeyAlias", func(t *testing.T) {
		dir := t.TempDir()
		config := filepath.Join(dir, "config")
		os.WriteFile(config, fmt.Appendf(nil, "Host aliased\n  HostName 127.0.0.1\n  Port %d\n  HostKeyAlias ferry-alias\n", s.sshd.Port), 0o600)
		cfg := s.cfg
		cfg.ConfigFile = config
		d := Destination{User: "root", Host: "aliased"}
		// known_hosts knows the key under the real address only: not under the alias.
		_, err := dial(t, d, cfg)
		if !errors.Is(err, ErrUnknownHostKey) || !strings.Contains(err.Error(), "ferry-alias") {
			t.Fatalf("got %v, want ErrUnknownHostKey naming the alias", err)
		}
		cfg.KnownHosts = filepath.Join(dir, "known_hosts")
		cfg.AcceptNewHostKey = true
		if _, err := dial(t, d, cfg); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(cfg.KnownHosts); !strings.HasPrefix(string(b), "ferry-alias ") {
			t.Fatalf("known_hosts after accepting: %q, want the key under the alias", b)
		}
		cfg.AcceptNewHostKey = false
		if _, err := dial(t, d, cfg); err != nil {
			t.Fatalf("the key recorded under the alias is not known: %v", err)
		}
	})

	t.Run("changed", func(t *testing.T) {
		other, _ := testenv.NewKey(t, t.TempDir(), "other", "")
		known := filepath.Join(t.TempDir(), "known_hosts")
		line := fmt.Sprintf("[127.0.0.1]:%d %s", s.sshd.Port, ssh.MarshalAuthorizedKey(other))
		os.WriteFile(known, []byte(line), 0o600)
		cfg := s.cfg
		cfg.KnownHosts, cfg.AcceptNewHostKey = known, true
		_, err := dial(t, s.dest("root"), cfg)
		if !errors.Is(err, ErrHostKeyChanged) {
			t.Fatalf("got %v, want ErrHostKeyChanged", err)
		}
		for _, want := range []string{fingerprint, ssh.FingerprintSHA256(other), known + ":1", "ssh-keygen -R"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q: %s", want, err)
			}
		}
		if b, _ := os.ReadFile(known); string(b) != line {
			t.Errorf("known_hosts changed: %q", b)
		}
	})
}

func TestAuth(t *testing.T) {
	s := startServer(t, testenv.SSHDOptions{})
	lockedPub, locked := testenv.NewKey(t, s.dir, "locked", "secret")
	_, stranger := testenv.NewKey(t, s.dir, "stranger", "")
	_, lockedStranger := testenv.NewKey(t, s.dir, "locked_stranger", "other secret")
	s.sshd.Authorize(t, lockedPub)

	t.Run("wrong key", func(t *testing.T) {
		cfg := s.cfg
		cfg.Identities = []string{stranger}
		_, err := dial(t, s.dest("root"), cfg)
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), stranger) {
			t.Fatalf("got %v, want ErrAuth naming %s", err, stranger)
		}
	})

	t.Run("agent", func(t *testing.T) {
		sock := startAgent(t, s.key)
		t.Setenv("SSH_AUTH_SOCK", sock)
		cfg := s.cfg
		cfg.Identities = nil
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("IdentitiesOnly", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", startAgent(t, s.key))
		cfg := s.cfg
		cfg.Identities = []string{stranger}
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatalf("the agent's key: %v", err)
		}
		cfg.Options = []string{"IdentitiesOnly=yes"}
		if _, err := dial(t, s.dest("root"), cfg); !errors.Is(err, ErrAuth) {
			t.Fatalf("IdentitiesOnly yes: got %v, want ErrAuth (the agent's key is no identity file)", err)
		}
		cfg.Identities = []string{stranger, s.key}
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatalf("IdentitiesOnly yes, the agent's key named: %v", err)
		}
	})

	t.Run("IdentityAgent", func(t *testing.T) {
		sock := startAgent(t, s.key)
		config := filepath.Join(t.TempDir(), "config")
		cfg := s.cfg
		cfg.Identities, cfg.ConfigFile = nil, config
		os.WriteFile(config, []byte("Host *\n  IdentityAgent "+sock+"\n"), 0o600)
		t.Setenv("SSH_AUTH_SOCK", "")
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatalf("IdentityAgent %s: %v", sock, err)
		}
		os.WriteFile(config, []byte("Host *\n  IdentityAgent none\n"), 0o600)
		t.Setenv("SSH_AUTH_SOCK", sock)
		if _, err := dial(t, s.dest("root"), cfg); !errors.Is(err, ErrAuth) {
			t.Fatalf("IdentityAgent none: got %v, want ErrAuth (the agent not asked)", err)
		}
	})

	t.Run("encrypted key without a terminal", func(t *testing.T) {
		cfg := s.cfg
		cfg.Identities = []string{locked}
		_, err := dial(t, s.dest("root"), cfg)
		if err == nil || !strings.Contains(err.Error(), "ssh-add") {
			t.Fatalf("got %v, want an error saying to use ssh-add", err)
		}
	})

	t.Run("encrypted key", func(t *testing.T) {
		var asked []string
		cfg := s.cfg
		// The server refuses lockedStranger: its passphrase is never asked.
		cfg.Identities = []string{lockedStranger, locked}
		cfg.Passphrase = func(path string) ([]byte, error) {
			asked = append(asked, path)
			return []byte("secret"), nil
		}
		if _, err := dial(t, s.dest("root"), cfg); err != nil {
			t.Fatal(err)
		}
		if len(asked) != 1 || asked[0] != locked {
			t.Errorf("passphrases asked for %v, want only %s", asked, locked)
		}
	})
}

// startAgent starts ssh-agent holding key and returns its socket.
func startAgent(t *testing.T, key string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command(testenv.Require(t, "ssh-agent"), "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	// The socket exists once bound, and takes connections once the agent listens.
	for i := 0; ; i++ {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close()
			break
		} else if i == 100 {
			t.Fatalf("ssh-agent does not listen on %s: %v", sock, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	add := exec.Command(testenv.Require(t, "ssh-add"), key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	return sock
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

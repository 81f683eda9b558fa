package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/transfer"
)

// SSH is a key and a known_hosts file: the sshds Host starts let the key in and are known
// there, and Options reach them with it.
type SSH struct {
	Options transfer.Options

	key   ssh.PublicKey
	known string
}

// NewSSH makes a key and an empty known_hosts file, and points HOME at a fresh directory
// and SSH_AUTH_SOCK nowhere, so that nothing of the user's is used. It starts nothing; call
// it before any subtest runs in parallel.
func NewSSH(t *testing.T) *SSH {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("SSH_AUTH_SOCK", "")
	pub, key := testenv.NewKey(t, dir, "id", "")
	known := filepath.Join(dir, "known_hosts")
	return &SSH{key: pub, known: known, Options: transfer.Options{
		SSH: sshconn.Config{ConfigFile: "none", KnownHosts: known, Identities: []string{key}},
	}}
}

// Host starts an sshd on this machine that lets the key in as root and sets env
// (NAME=VALUE) in its sessions, adds its host key to known_hosts, and returns its
// destination, root@127.0.0.1:PORT.
func (s *SSH) Host(t *testing.T, env ...string) string {
	t.Helper()
	return "root@" + s.Start(t, testenv.SSHDOptions{SetEnv: env}).Addr
}

// Start starts an sshd as opts say that also lets the key in, and adds its host key to
// known_hosts.
func (s *SSH) Start(t *testing.T, opts testenv.SSHDOptions) *testenv.SSHD {
	t.Helper()
	opts.AuthorizedKeys = append(opts.AuthorizedKeys, s.key)
	sshd := testenv.StartSSHD(t, opts)
	f, err := os.OpenFile(s.known, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(sshd.KnownHostsLine() + "\n"); err != nil {
		t.Fatal(err)
	}
	return sshd
}

// SortedLines sorts the lines of a tool's output, for a State.
func SortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// ListTree lists every file under dir with its mode and size, for a State.
func ListTree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		size := fi.Size()
		if d.IsDir() {
			size = 0
		}
		out = append(out, fmt.Sprintf("%s %v %d", rel, fi.Mode(), size))
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return "(no directory)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// CheckConfig reads ref's manifest with skopeo and fails t unless its config digest is id:
// a Check for stores that hold images without running them.
func CheckConfig(t *testing.T, skopeo, ref, id string) {
	t.Helper()
	cmd := []string{"inspect", "--raw"}
	if strings.HasPrefix(ref, "docker://") {
		cmd = append(cmd, "--tls-verify=false")
	}
	out, err := exec.Command(skopeo, append(cmd, ref)...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	var m struct{ Config struct{ Digest string } }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("skopeo inspect %s: %v", ref, err)
	}
	if m.Config.Digest != id {
		t.Errorf("skopeo reads config %s from %s, want %s", m.Config.Digest, ref, id)
	}
}

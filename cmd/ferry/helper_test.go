package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// helperSetup is a source daemon holding a rebuilt set, hosts holding the old one, and how
// the tests send between them.
type helperSetup struct {
	src          *testenv.Docker
	old, rebuilt string // the two sets, as bundles
	pub          ssh.PublicKey
	env, args    []string
	digest       string // of the ferry binary under test, naming its helper's directory
}

func newHelperSetup(t *testing.T) *helperSetup {
	t.Helper()
	s := &helperSetup{src: testenv.StartDocker(t)}
	s.old, s.rebuilt = rebuiltBundles(t, 2)
	mustFerry(t, dockerEnv(s.src), "load", "-q", "-i", s.rebuilt)
	home := t.TempDir()
	var key string
	s.pub, key = testenv.NewKey(t, home, "id", "")
	s.env = []string{"HOME=" + home, "SSH_AUTH_SOCK=", "DOCKER_HOST=" + s.src.Host, "TMPDIR=" + t.TempDir()}
	s.args = []string{"--known-hosts", filepath.Join(home, "known_hosts"), "--accept-new-host-key", "-i", key}
	data, err := os.ReadFile(ferryBin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	s.digest = hex.EncodeToString(sum[:])
	return s
}

// helperHost is a docker daemon holding the old set behind an sshd.
type helperHost struct {
	docker *testenv.Docker
	sshd   *testenv.SSHD
	dest   string
}

// host starts a daemon of flavor f holding the old set, behind an sshd that opts say.
func (s *helperSetup) host(t *testing.T, f testenv.Flavor, opts testenv.SSHDOptions) *helperHost {
	t.Helper()
	d := testenv.StartDockerFlavor(t, f)
	mustFerry(t, dockerEnv(d), "load", "-q", "-i", s.old)
	opts.AuthorizedKeys = []ssh.PublicKey{s.pub}
	user := "root"
	if opts.User != "" {
		user = opts.User
		d.ShareSocket(t)
	}
	sshd := testenv.StartSSHD(t, opts)
	return &helperHost{docker: d, sshd: sshd, dest: "ssh://" + user + "@" + sshd.Addr + socketPath(d)}
}

// send sends the rebuilt set to hosts with more arguments.
func (s *helperSetup) send(t *testing.T, more []string, hosts ...*helperHost) result {
	t.Helper()
	args := append([]string{"send", "app:1", "app:2"}, s.args...)
	for _, h := range hosts {
		args = append(args, "-H", h.dest)
	}
	return ferry(t, s.env, append(args, more...)...)
}

// holdsRebuilt checks that the host's daemon holds the rebuilt set.
func (s *helperSetup) holdsRebuilt(t *testing.T, h *helperHost) {
	t.Helper()
	for _, img := range summary(t, s.rebuilt).Images {
		got := strings.TrimSpace(h.docker.Run(t, "image", "inspect", "-f", "{{.Id}}", img.Tags[0]))
		if got != img.ID && got != img.Manifest {
			t.Errorf("%s is %s on the host, want %s", img.Tags[0], got, img.ID)
		}
	}
}

// helperPath is where the helper goes in a home.
func (s *helperSetup) helperPath(home string) string {
	return filepath.Join(home, ".cache/ferry/helper", s.digest, "ferry")
}

// sentBytes is the SENT column of a send's summary row for a host, parsed back.
func sentRow(t *testing.T, stdout string, h *helperHost) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(line, h.dest+" ") {
			return strings.Join(strings.Fields(line), " ")
		}
	}
	t.Fatalf("no row for %s:\n%s", h.dest, stdout)
	return ""
}

// TestSendHelper: a send to hosts holding the old set, as root and as a user, copies the
// helper once into the user's cache, sends content deltas, and the hosts hold the rebuilt
// set; the second send moves almost nothing and copies nothing. A copy there whose digest
// does not match is replaced, never run, and old copies are pruned.
func TestSendHelper(t *testing.T) {
	s := newHelperSetup(t)
	for _, user := range []string{"", "ferrytest"} {
		t.Run(cmpOr(user, "root"), func(t *testing.T) {
			h := s.host(t, testenv.Docker2010, testenv.SSHDOptions{User: user})
			bin := s.helperPath(h.sshd.Home)
			stale := filepath.Join(h.sshd.Home, ".cache/ferry/helper", strings.Repeat("0", 64))
			os.MkdirAll(stale, 0o755)
			if user != "" {
				filepath.Walk(filepath.Join(h.sshd.Home, ".cache"), func(p string, _ os.FileInfo, _ error) error {
					return os.Chown(p, testenv.TestUID, 65534)
				})
			}
			long := time.Now().Add(-48 * time.Hour)
			os.Chtimes(stale, long, long)

			r := s.send(t, []string{"--progress", "plain"}, h)
			row := sentRow(t, r.stdout, h)
			if r.code != 0 || !strings.Contains(row, "by content: 3 layers rebuilt there") || !strings.Contains(row, "ferry helper copied there") {
				t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
			}
			t.Log(row)
			s.holdsRebuilt(t, h)
			if fi, err := os.Stat(bin); err != nil || fi.Mode().Perm()&0o111 == 0 {
				t.Fatalf("the helper is not at %s: %v", bin, err)
			}
			if _, err := os.Stat(stale); !os.IsNotExist(err) {
				t.Errorf("an old copy of the helper was not pruned: %v", err)
			}

			r = s.send(t, []string{"--progress", "json"}, h)
			if row := sentRow(t, r.stdout, h); r.code != 0 || strings.Contains(row, "copied") || sent(t, r.stderr, h.dest) > 64<<10 {
				t.Errorf("the second send: exit %d, %s\n%s", r.code, row, r.stderr)
			}
		})
	}

	t.Run("tampered", func(t *testing.T) {
		h := s.host(t, testenv.Docker2010, testenv.SSHDOptions{})
		bin, ran := s.helperPath(h.sshd.Home), filepath.Join(h.sshd.Home, "ran")
		os.MkdirAll(filepath.Dir(bin), 0o755)
		os.WriteFile(bin, []byte("#!/bin/sh\ntouch "+ran+"\n"), 0o755)
		r := s.send(t, nil, h)
		if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content") || !strings.Contains(row, "copied") {
			t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
		}
		if _, err := os.Stat(ran); !os.IsNotExist(err) {
			t.Error("a copy whose digest does not match ran")
		}
		sameFile(t, bin, ferryBin)
		s.holdsRebuilt(t, h)
	})
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sent is the bytes sent to host, as the JSON progress on stderr ends it.
func sent(t *testing.T, stderr, host string) int64 {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		var ev struct {
			Event, Action string
			Bytes         int64
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "done" && ev.Action == host {
			return ev.Bytes
		}
	}
	t.Fatalf("no done event for %s:\n%s", host, stderr)
	return 0
}

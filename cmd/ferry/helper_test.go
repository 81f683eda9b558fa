package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// holdsRebuilt checks that the host's daemon holds the rebuilt set: its layers, by diffID.
func (s *helperSetup) holdsRebuilt(t *testing.T, h *helperHost) {
	t.Helper()
	for _, img := range summary(t, s.rebuilt).Images {
		var want []string
		for _, l := range img.Layers {
			want = append(want, l.DiffID)
		}
		got := strings.TrimSpace(h.docker.Run(t, "image", "inspect", "-f", "{{json .RootFS.Layers}}", img.Tags[0]))
		if w, _ := json.Marshal(want); got != string(w) {
			t.Errorf("%s has layers %s on the host, want %s", img.Tags[0], got, w)
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

	t.Run("two hosts", func(t *testing.T) {
		// One send to two hosts by content: each gets a delta of its own, made of the
		// layers cut once, as the save spooled them.
		hosts := []*helperHost{s.host(t, testenv.Docker2010, testenv.SSHDOptions{}), s.host(t, testenv.Docker2010, testenv.SSHDOptions{})}
		r := s.send(t, []string{"--progress", "plain"}, hosts...)
		for _, h := range hosts {
			if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content: 3 layers rebuilt there") {
				t.Fatalf("exit %d: %s\n%s", r.code, r.stdout, r.stderr)
			}
			s.holdsRebuilt(t, h)
		}
	})

	t.Run("two sources", func(t *testing.T) {
		// Each source is a delta of its own: the second load's base is picked from what
		// the host's cache learnt when the first asked for its index.
		file := filepath.Join(t.TempDir(), "app2.tar")
		mustFerry(t, s.env, "save", "-q", "app:2", "-o", file)
		h := s.host(t, testenv.Docker2010, testenv.SSHDOptions{})
		r := ferry(t, s.env, append([]string{"send", "app:1", file, "-H", h.dest, "--progress", "json"}, s.args...)...)
		if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content") || sent(t, r.stderr, h.dest) > 2<<20 {
			t.Fatalf("exit %d, the layers sent (%d bytes), not deltas: %s\n%s", r.code, sent(t, r.stderr, h.dest), row, r.stderr)
		}
		s.holdsRebuilt(t, h)
	})

	t.Run("a small image", func(t *testing.T) {
		// The host lacks one small layer: it goes as a layer, and the helper is not copied.
		oldImgs, _ := testenv.RebuiltSet(t, 2)
		small, err := mutate.AppendLayers(oldImgs[0], static.NewLayer(noiseLayer(t, []byte("a small change\n")), types.OCIUncompressedLayer))
		if err != nil {
			t.Fatal(err)
		}
		bundle := writeApps(t, filepath.Join(t.TempDir(), "small.tar"), []v1.Image{small})
		h := s.host(t, testenv.Docker2010, testenv.SSHDOptions{})
		r := ferry(t, s.env, append([]string{"send", bundle, "-H", h.dest}, s.args...)...)
		if row := sentRow(t, r.stdout, h); r.code != 0 || strings.Contains(row, "by content") || strings.Contains(row, "copied") || !strings.Contains(row, "1 of 3") {
			t.Errorf("exit %d: %s\n%s", r.code, row, r.stderr)
		}
		if _, err := os.Stat(s.helperPath(h.sshd.Home)); !os.IsNotExist(err) {
			t.Errorf("the helper was copied for one small layer: %v", err)
		}
	})

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

// TestSendHelperFallback: hosts where the helper cannot run (a noexec home, sshd running
// every command as internal-sftp, a home the user may not write) are sent layers, each
// with one note line saying why, while a host beside them in the same send gets a content
// delta; --helper always fails them instead, and --helper never sends as without it.
func TestSendHelperFallback(t *testing.T) {
	s := newHelperSetup(t)
	good := s.host(t, testenv.Docker2010, testenv.SSHDOptions{})
	cases := []struct {
		name string
		opts testenv.SSHDOptions
		why  string
	}{
		{"noexec home", testenv.SSHDOptions{NoexecHome: true}, "is the home directory mounted noexec?"},
		{"refused exec", testenv.SSHDOptions{Config: "ForceCommand internal-sftp\n"}, "runs no command there"},
		{"no cache", testenv.SSHDOptions{User: "ferrytest", Home: "/"}, "no cache to write"},
	}
	var hosts []*helperHost
	for _, c := range cases {
		hosts = append(hosts, s.host(t, testenv.Docker2010, c.opts))
	}

	r := s.send(t, []string{"--helper", "always"}, hosts...)
	if r.code != 1 || strings.Count(r.stderr, "--helper always: the ferry helper cannot run there") != len(hosts) {
		t.Errorf("--helper always: exit %d\n%s", r.code, r.stderr)
	}
	plain := s.host(t, testenv.Docker2010, testenv.SSHDOptions{})
	if r := s.send(t, []string{"--helper", "never"}, plain); r.code != 0 || strings.Contains(r.stdout, "by content") || strings.Contains(r.stderr, "helper") {
		t.Errorf("--helper never: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(plain.sshd.Home, ".cache")); !os.IsNotExist(err) {
		t.Errorf("--helper never wrote to the host's cache: %v", err)
	}

	r = s.send(t, nil, append([]*helperHost{good}, hosts...)...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if row := sentRow(t, r.stdout, good); !strings.Contains(row, "by content") {
		t.Errorf("the host where the helper runs: %s", row)
	}
	for i, c := range cases {
		h := hosts[i]
		if row := sentRow(t, r.stdout, h); strings.Contains(row, "by content") {
			t.Errorf("%s: %s", c.name, row)
		}
		var notes []string
		for _, line := range strings.Split(r.stderr, "\n") {
			if strings.Contains(line, h.dest) && strings.Contains(line, "helper") {
				notes = append(notes, line)
			}
		}
		if len(notes) != 1 || !strings.Contains(notes[0], c.why) || !strings.HasSuffix(notes[0], "sending without it") {
			t.Errorf("%s: notes %q, want one saying %q", c.name, notes, c.why)
		}
		s.holdsRebuilt(t, h)
	}
	s.holdsRebuilt(t, good)
}

// TestSendHelperCut: a send cut while the content delta travels leaves the host as it was
// and what came of the delta in the helper's cache; the same send again sends the rest.
func TestSendHelperCut(t *testing.T) {
	s := newHelperSetup(t)
	oldImgs, newImgs := testenv.RebuiltSet(t, 2)
	noise := make([]byte, 48<<20) // new content that does not compress
	mrand.NewChaCha8([32]byte{1}).Read(noise)
	var err error
	if newImgs[0], err = mutate.AppendLayers(newImgs[0], static.NewLayer(noiseLayer(t, noise), types.OCIUncompressedLayer)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s.old, s.rebuilt = writeApps(t, filepath.Join(dir, "old.tar"), oldImgs), writeApps(t, filepath.Join(dir, "rebuilt.tar"), newImgs)
	mustFerry(t, dockerEnv(s.src), "load", "-q", "-i", s.rebuilt)
	h := s.host(t, testenv.Docker2010, testenv.SSHDOptions{})
	images := func() string {
		return strings.Join(slices.Sorted(strings.FieldsSeq(h.docker.Run(t, "images", "-q", "--no-trunc"))), " ")
	}
	before := images()

	cmd := exec.Command(ferryBin, append(append([]string{"send", "app:1", "app:2"}, s.args...), "-H", h.dest)...)
	cmd.Env = append(os.Environ(), s.env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deltas := filepath.Join(h.sshd.Home, ".cache/ferry/helper/deltas")
	var partial int64
	waitFor(t, func() bool {
		m, _ := filepath.Glob(filepath.Join(deltas, "*"))
		if len(m) == 1 {
			if fi, err := os.Stat(m[0]); err == nil {
				partial = fi.Size()
			}
		}
		return partial > 8<<20
	})
	h.sshd.FreezeSessions()
	cmd.Process.Kill()
	cmd.Wait()
	h.sshd.KillSessions()
	if after := images(); after != before {
		t.Errorf("a cut send changed the host: %s, was %s", after, before)
	}

	r := s.send(t, []string{"--progress", "json"}, h)
	if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "of the delta there already") {
		t.Fatalf("exit %d: %s\n%s", r.code, row, r.stderr)
	}
	if n := sent(t, r.stderr, h.dest); n > int64(len(noise))-partial+1<<20 {
		t.Errorf("the send again sent %d bytes; the host held %d of a delta of about %d", n, partial, len(noise))
	}
	s.holdsRebuilt(t, h)
	if left, _ := os.ReadDir(deltas); len(left) != 0 {
		t.Errorf("left in the helper's cache: %v", left)
	}
}

// noiseLayer is a layer of one file of data.
func noiseLayer(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "noise", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	return buf.Bytes()
}

// TestSendHelperStores: through the helper into docker 26 on the containerd image store
// and docker 28 (its containerd reached by the helper on the host), into the k8s.io namespace
// of containerd 1.7 and 2.1,
// into podman 5 (--helper always: podman's inventory names no layers, so auto sends it
// layers) and into an OCI layout (a path relative to the home directory), each holding the
// old set: content deltas, and the rebuilt set there.
func TestSendHelperStores(t *testing.T) {
	s := newHelperSetup(t)
	t.Run("oci", func(t *testing.T) {
		h := &helperHost{sshd: testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{s.pub}})}
		h.dest = "root@" + h.sshd.Addr
		layout := filepath.Join(h.sshd.Home, "images")
		mustFerry(t, nil, "load", "-q", "-i", s.old, "--to", "oci:"+layout)
		r := s.send(t, []string{"--to", "oci:images"}, h)
		if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content") {
			t.Fatalf("exit %d: %s\n%s", r.code, row, r.stderr)
		}
		back := filepath.Join(t.TempDir(), "back.tar")
		mustFerry(t, nil, "save", "-q", "oci:"+layout+":app:1", "oci:"+layout+":app:2", "-o", back)
		for i, img := range summary(t, back).Images {
			if want := summary(t, s.rebuilt).Images[i]; img.ID != want.ID {
				t.Errorf("%v is %s in the layout, want %s", img.Tags, img.ID, want.ID)
			}
		}
	})
	for _, root := range testenv.Roots {
		f := root.DockerContainerd
		t.Run(string(f), func(t *testing.T) {
			h := s.host(t, f, testenv.SSHDOptions{})
			r := s.send(t, nil, h)
			if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content") {
				t.Fatalf("exit %d: %s\n%s", r.code, row, r.stderr)
			}
			s.holdsRebuilt(t, h)
		})
	}
	t.Run("podman", func(t *testing.T) {
		pm := testenv.Podman5(t)
		path := "PATH=" + pm.Wrapper(t) + ":/usr/sbin:/usr/bin:/sbin:/bin"
		mustFerry(t, []string{path}, "load", "-q", "-i", s.old, "--to", "podman")
		h := &helperHost{sshd: testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{s.pub}, SetEnv: []string{path}})}
		h.dest = "root@" + h.sshd.Addr
		r := s.send(t, []string{"--to", "podman", "--helper", "always"}, h)
		if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content") {
			t.Fatalf("exit %d: %s\n%s", r.code, row, r.stderr)
		}
		for _, img := range summary(t, s.rebuilt).Images {
			if got := strings.TrimSpace(pm.Run(t, "image", "inspect", "-f", "{{.Id}}", "localhost/"+img.Tags[0])); "sha256:"+got != img.ID {
				t.Errorf("%s is %s in podman, want %s", img.Tags[0], got, img.ID)
			}
		}
	})
	for _, root := range testenv.Roots {
		t.Run("containerd "+root.Containerd, func(t *testing.T) {
			c := root.StartContainerd(t)
			mustFerry(t, []string{"CONTAINERD_ADDRESS=" + c.Socket}, "load", "-q", "-i", s.old, "--to", "containerd:k8s.io")
			h := &helperHost{sshd: testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{s.pub}})}
			h.dest = "ssh://root@" + h.sshd.Addr + c.Socket
			r := s.send(t, []string{"--to", "containerd:k8s.io"}, h)
			if row := sentRow(t, r.stdout, h); r.code != 0 || !strings.Contains(row, "by content") {
				t.Fatalf("exit %d: %s\n%s", r.code, row, r.stderr)
			}
			for _, img := range summary(t, s.rebuilt).Images {
				name := "docker.io/library/" + img.Tags[0]
				var manifest struct{ Config struct{ Digest string } }
				ls := strings.Fields(c.Ctr(t, "-n", "k8s.io", "images", "ls", "name=="+name))
				i := slices.IndexFunc(ls, func(f string) bool { return strings.HasPrefix(f, "sha256:") })
				if i < 0 || json.Unmarshal([]byte(c.Ctr(t, "-n", "k8s.io", "content", "get", ls[i])), &manifest) != nil || manifest.Config.Digest != img.ID {
					t.Errorf("containerd holds %s as %v, want the config %s", name, ls, img.ID)
				}
			}
		})
	}
}

// TestHelperRefuses: the helper answers a protocol version it does not know with a refusal
// and exit 2, reading nothing more; --helper takes auto, always or never.
func TestHelperRefuses(t *testing.T) {
	cmd := exec.Command(ferryBin, "helper")
	cmd.Stdin = strings.NewReader("ferry-helper 99\n{\"op\":\"index\",\"store\":\"docker\"}\n")
	out, err := cmd.Output()
	if cmd.ProcessState.ExitCode() != 2 || !strings.HasPrefix(string(out), "ferry-helper refused: protocol version 99") {
		t.Errorf("exit %d (%v): %q", cmd.ProcessState.ExitCode(), err, out)
	}
	if r := ferry(t, nil, "send", "app:1", "-H", "web1", "--helper", "sometimes"); r.code != 2 || !strings.Contains(r.stderr, "--helper") {
		t.Errorf("--helper sometimes: exit %d: %s", r.code, r.stderr)
	}
}

package transfer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/sshconn"
)

// sshHost starts an sshd with nothing behind it but this machine, and returns its
// destination.
func (e *sendEnv) sshHost(t *testing.T, env ...string) (*testenv.SSHD, string) {
	t.Helper()
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{e.key}, SetEnv: env})
	e.know(t, sshd)
	return sshd, "root@" + sshd.Addr
}

func (e *sendEnv) sendStore(t *testing.T, to string, images []string, dest string) (HostResult, error) {
	t.Helper()
	opts := e.opts
	opts.To = to
	res, err := e.sendTo(t, images, []string{dest}, opts)
	if res == nil {
		t.Fatalf("Send to %s: %v", to, err)
	}
	return res[0], err
}

// checkBlobs fails unless every file in the layout's blob directory is named by the digest
// of its content, temporary files aside.
func checkBlobs(t *testing.T, dir string) (blobs int) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".ferry-") { // temporary files
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s holds content hashing to %x", e.Name(), sum)
		}
		blobs++
	}
	return blobs
}

func skopeoConfigDigest(t *testing.T, ref string) string {
	t.Helper()
	out, err := exec.Command("skopeo", "inspect", "--raw", ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v", ref, err)
	}
	var m struct {
		Config struct{ Digest string }
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("skopeo inspect %s: %v", ref, err)
	}
	return m.Config.Digest
}

func TestSendOCI(t *testing.T) {
	testenv.Require(t, "skopeo")
	e := newSendEnv(t)
	e.src.BusyboxImage(t, "base:1", nil)
	e.src.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "app 1\n"})
	e.src.DeriveImage(t, "big:2", "base:1", map[string]string{"marker": "big\n", "data": randomFile(t, 8<<20)})
	sshd, host := e.sshHost(t)
	root := t.TempDir()
	appID := strings.TrimSpace(e.src.Run(t, "image", "inspect", "-f", "{{.Id}}", "app:1"))
	bigID := strings.TrimSpace(e.src.Run(t, "image", "inspect", "-f", "{{.Id}}", "big:2"))

	dir := filepath.Join(root, "layout")
	var cold HostResult
	t.Run("cold", func(t *testing.T) {
		var err error
		cold, err = e.sendStore(t, "oci:"+dir, []string{"app:1"}, host)
		if err != nil {
			t.Fatal(err)
		}
		if cold.Layers != 2 || cold.Skipped != 0 || cold.Sent != cold.Full || cold.Sent < 500<<10 ||
			len(cold.Loaded) != 1 || cold.Loaded[0] != "app:1" {
			t.Errorf("cold send: %+v", cold)
		}
		if got := skopeoConfigDigest(t, "oci:"+dir+":app:1"); got != appID {
			t.Errorf("skopeo reads config %s from the layout, docker has image %s", got, appID)
		}
		checkBlobs(t, dir)
	})

	t.Run("warm", func(t *testing.T) {
		warm, err := e.sendStore(t, "oci:"+dir, []string{"app:1"}, host)
		if err != nil {
			t.Fatal(err)
		}
		if warm.Sent != 0 || warm.Skipped != 2 || warm.Full != cold.Full {
			t.Errorf("sending again: %+v, want nothing sent", warm)
		}
		// big:2 shares the base: only its own layer, config and manifest travel.
		big, err := e.sendStore(t, "oci:"+dir, []string{"big:2"}, host)
		if err != nil {
			t.Fatal(err)
		}
		if big.Skipped != 1 || big.Sent < 8<<20 || big.Sent > 8<<20+64<<10 {
			t.Errorf("warm send: %+v", big)
		}
		if got := skopeoConfigDigest(t, "oci:"+dir+":big:2"); got != bigID {
			t.Errorf("skopeo reads config %s, docker has image %s", got, bigID)
		}
		if got := skopeoConfigDigest(t, "oci:"+dir+":app:1"); got != appID {
			t.Errorf("app:1 after adding big:2: config %s, want %s", got, appID)
		}
	})

	t.Run("connection cut mid-send", func(t *testing.T) {
		dir := filepath.Join(root, "cut")
		opts := e.opts
		opts.To = "oci:" + dir
		// The base layer goes first and whole; the cut comes 1 MiB into big:2's own.
		var once sync.Once
		opts.Progress = func(_ string, sent, _ int64) {
			if sent > cold.Full-64<<10+1<<20 {
				once.Do(sshd.KillSessions)
			}
		}
		res, err := e.sendTo(t, []string{"big:2"}, []string{host}, opts)
		var se *SendError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "sending again sends only the rest") {
			t.Fatalf("got %v, want the host to fail with a cut connection", err)
		}
		if res[0].Sent >= res[0].Full {
			t.Errorf("cut send: %+v", res[0])
		}
		if n := checkBlobs(t, dir); n != 1 {
			t.Errorf("%d blobs after the cut, want the base layer alone", n)
		}
		if idx, err := os.ReadFile(filepath.Join(dir, "index.json")); err != nil || strings.Contains(string(idx), "sha256:") {
			t.Errorf("index.json after a cut send names an image, or is missing: %s %v", idx, err)
		}
		again, err := e.sendStore(t, "oci:"+dir, []string{"big:2"}, host)
		if err != nil {
			t.Fatal(err)
		}
		if again.Skipped != 1 || again.Sent > 8<<20+64<<10 {
			t.Errorf("sending again: %+v, want the base layer skipped", again)
		}
		if got := skopeoConfigDigest(t, "oci:"+dir+":big:2"); got != bigID {
			t.Errorf("skopeo reads config %s, docker has image %s", got, bigID)
		}
		checkBlobs(t, dir)
	})

	t.Run("index lock", func(t *testing.T) {
		dir := filepath.Join(root, "locked")
		if _, err := e.sendStore(t, "oci:"+dir, []string{"app:1"}, host); err != nil {
			t.Fatal(err)
		}
		lock := filepath.Join(dir, ".ferry.lock")
		os.WriteFile(lock, nil, 0o644) // another send is updating index.json
		done := make(chan error, 1)
		told := make(chan string, 1)
		go func() {
			opts := e.opts
			opts.To = "oci:" + dir
			opts.Waiting = func(msg string) { told <- msg }
			_, err := e.sendTo(t, []string{"big:2"}, []string{host}, opts)
			done <- err
		}()
		select {
		case err := <-done:
			t.Fatalf("the send did not wait for the lock: %v", err)
		case <-time.After(2 * time.Second):
		}
		select {
		case msg := <-told:
			if !strings.Contains(msg, host+": waiting for the lock") || !strings.Contains(msg, ".ferry.lock") {
				t.Errorf("told %q while waiting", msg)
			}
		default:
			t.Error("the send waited for the lock without saying so")
		}
		os.Remove(lock)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if got := skopeoConfigDigest(t, "oci:"+dir+":big:2"); got != bigID {
			t.Errorf("after the lock: config %s, want %s", got, bigID)
		}

		// A lock whose holder is gone (a process of this machine, killed) is taken over.
		bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		os.WriteFile(lock, fmt.Appendf(nil, "ferry %d %s", testenv.GonePID(t), bootID), 0o644)
		dir2 := filepath.Join(root, "concurrent")
		var wg sync.WaitGroup
		for _, sends := range [][2]string{{dir, "app:1"}, {dir2, "app:1"}, {dir2, "big:2"}} {
			wg.Go(func() {
				if _, err := e.sendStore(t, "oci:"+sends[0], []string{sends[1]}, host); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the stale lock is still there: %v", err)
		}
		// Something else in the lock's place: a clear error, not a wait.
		os.Mkdir(lock, 0o755)
		if _, err := e.sendStore(t, "oci:"+dir, []string{"app:1"}, host); err == nil || !strings.Contains(err.Error(), "locking") {
			t.Errorf("a directory where the lock goes: got %v, want a locking error", err)
		}
		os.Remove(lock)
		// Two sends into one new layout at once: both images in its index.
		for tag, id := range map[string]string{"app:1": appID, "big:2": bigID} {
			if got := skopeoConfigDigest(t, "oci:"+dir2+":"+tag); got != id {
				t.Errorf("concurrent sends: tag %s has config %s, want %s", tag, got, id)
			}
		}
	})

	t.Run("not a layout", func(t *testing.T) {
		dir := filepath.Join(root, "other")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
		_, err := e.sendStore(t, "oci:"+dir, []string{"app:1"}, host)
		if err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
			t.Fatalf("got %v, want a refusal", err)
		}
	})
}

func TestSendStoreChecksFirst(t *testing.T) {
	for _, c := range []struct{ to, host string }{
		{"oci:", "root@127.0.0.1:1"},
		{"tar:x", "root@127.0.0.1:1"},
		{"podman", "ssh://root@127.0.0.1:1/run/podman/podman.sock"},
	} {
		_, err := Send(t.Context(), []string{"app:1"}, []string{c.host}, SendOptions{To: c.to})
		if !errors.Is(err, ErrInvalidReference) {
			t.Errorf("--to %q to %s: got %v, want ErrInvalidReference", c.to, c.host, err)
		}
	}
}

func TestSendPodman(t *testing.T) {
	podman := testenv.Require(t, "podman")
	e := newSendEnv(t)
	e.src.BusyboxImage(t, "base:1", nil)
	e.src.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "app 1\n"})
	appID := strings.TrimSpace(e.src.Run(t, "image", "inspect", "-f", "{{.Id}}", "app:1"))

	// podman's storage, for the sshd's sessions and for the checks here.
	dir := t.TempDir()
	conf := filepath.Join(dir, "storage.conf")
	err := os.WriteFile(conf, []byte(`[storage]
driver = "vfs"
graphroot = "`+dir+`/root"
runroot = "`+dir+`/run"
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, host := e.sshHost(t, "CONTAINERS_STORAGE_CONF="+conf)
	inspect := func(ref string) (string, error) {
		cmd := exec.Command(podman, "image", "inspect", "--format", "{{.Id}}", ref)
		cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	t.Cleanup(func() { // vfs layers are plain directories, but podman may leave mounts
		cmd := exec.Command(podman, "system", "reset", "--force")
		cmd.Env = append(os.Environ(), "CONTAINERS_STORAGE_CONF="+conf)
		cmd.Run()
	})

	res, err := e.sendStore(t, "podman", []string{"app:1"}, host)
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete == "" || res.Skipped != 0 || res.Sent < 500<<10 || len(res.Loaded) != 1 || !strings.HasSuffix(res.Loaded[0], "app:1") {
		t.Errorf("podman send: %+v", res)
	}
	id, err := inspect("app:1")
	if err != nil || "sha256:"+id != appID {
		t.Errorf("podman image inspect app:1: %s, %v; want %s", id, err, appID)
	}

	t.Run("no podman on the host", func(t *testing.T) {
		_, host := e.sshHost(t, "PATH=/nonexistent")
		_, err := e.sendStore(t, "podman", []string{"app:1"}, host)
		var ce *sshconn.CommandError
		if !errors.As(err, &ce) || ce.Status != 127 || !strings.Contains(err.Error(), "is podman installed") {
			t.Fatalf("got %v, want a command error with status 127", err)
		}
	})
}

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestLeftovers: what a killed run leaves — a half-written bundle next to -o, a spool under
// $TMPDIR, a stage in an OCI layout — the next run that uses the same place removes, and a
// live run's files it leaves alone.
func TestLeftovers(t *testing.T) {
	bundle := ggcrTestdata(t, "hello-world-v25.tar")
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	env := []string{"TMPDIR=" + tmp}

	dead, live := testenv.GonePID(t), testenv.LivePID(t)
	out := filepath.Join(dir, "out.tar")
	left := []string{
		filepath.Join(dir, fmt.Sprintf(".out.tar.tmp-%d-1", dead)),
		filepath.Join(tmp, fmt.Sprintf("ferry-spool-%d-2", dead)),
	}
	liveFiles := []string{
		filepath.Join(dir, fmt.Sprintf(".out.tar.tmp-%d-3", live)),
		filepath.Join(tmp, fmt.Sprintf("ferry-spool-%d-4", live)),
	}
	for _, p := range append(left, liveFiles...) {
		os.WriteFile(p, []byte("half"), 0o644)
	}
	mustFerry(t, env, "save", bundle, "-o", out, "-q")
	for _, p := range left {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("a killed run's %s is still there after save", p)
		}
	}
	for _, p := range liveFiles {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a live run's %s: %v", p, err)
		}
	}

	t.Run("load killed in a new OCI directory", func(t *testing.T) {
		layout := filepath.Join(dir, "layout")
		data, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(ferryBin, "load", "--to", "oci:"+layout, "-q")
		cmd.Env = append(os.Environ(), env...)
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		in.Write(data[:len(data)/2])
		time.Sleep(500 * time.Millisecond) // the stage is made, half the bundle read
		cmd.Process.Kill()
		cmd.Wait()
		io.WriteString(in, "") //nolint:errcheck
		mustFerry(t, env, "load", "-i", bundle, "--to", "oci:"+layout, "-q")
		entries, _ := os.ReadDir(layout)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "blobs index.json oci-layout" {
			t.Errorf("the layout holds %q after a killed load and another", got)
		}
		blobs, _ := os.ReadDir(filepath.Join(layout, "blobs", "sha256"))
		for _, e := range blobs {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("temporary file %s left in blobs/sha256", e.Name())
			}
		}
		run(t, "skopeo", "inspect", "--raw", "oci:"+layout) // its one image, untagged
	})

	t.Run("ten first loads into one new directory at once", func(t *testing.T) {
		layout := filepath.Join(dir, "new")
		errs := make(chan string, 10)
		for range 10 {
			go func() {
				r := ferry(t, env, "load", "-i", bundle, "--to", "oci:"+layout, "-q")
				if r.code != 0 {
					errs <- r.stderr
				} else {
					errs <- ""
				}
			}()
		}
		for range 10 {
			if msg := <-errs; msg != "" {
				t.Errorf("a concurrent first load failed: %s", msg)
			}
		}
		run(t, "skopeo", "inspect", "--raw", "oci:"+layout)
	})
}

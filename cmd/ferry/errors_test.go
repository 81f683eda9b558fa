package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestBadInput checks that bad input gets a clear error and an exit status, and leaves
// stores and destination paths as they were.
func TestBadInput(t *testing.T) {
	d := testenv.StartDocker(t)
	d.BusyboxImage(t, "app:1", map[string]string{"/marker": "x\n"})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	mustFerry(t, dockerEnv(d), "save", "app:1", "-o", good, "-q")
	d.Run(t, "rmi", "app:1")

	// A copy of the bundle with one byte of its largest layer flipped.
	corrupt := filepath.Join(dir, "corrupt.tar")
	data, _ := os.ReadFile(good)
	data[len(data)-4096] ^= 0xff // inside the last blob: the layers follow the metadata
	os.WriteFile(corrupt, data, 0o644)
	notBundle := filepath.Join(dir, "notes.txt")
	os.WriteFile(notBundle, []byte("hello, this is not a tar\n"), 0o644)
	layout := filepath.Join(dir, "layout")

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"corrupt into docker", []string{"load", "-i", corrupt}, 3, "mismatch"},
		{"corrupt into oci", []string{"load", "-i", corrupt, "--to", "oci:" + layout}, 3, "mismatch"},
		{"not a bundle", []string{"load", "-i", notBundle}, 3, "not a tar archive"},
		{"empty", []string{"load", "-i", os.DevNull}, 3, "not an image bundle"},
		{"verify corrupt", []string{"verify", corrupt}, 3, "mismatch"},
		{"missing file", []string{"load", "-i", filepath.Join(dir, "nope.tar")}, 1, "no such file"},
		{"no such image", []string{"save", "nosuch:1", "-o", filepath.Join(dir, "out.tar")}, 1, "nosuch:1"},
		{"invalid reference", []string{"save", "UPPER:1", "-o", filepath.Join(dir, "out.tar")}, 2, "invalid reference"},
		{"unknown store", []string{"load", "-i", good, "--to", "ftp:x"}, 2, "unknown store"},
		{"bad compression", []string{"save", "app:1", "--compress", "lz4", "-o", filepath.Join(dir, "out.tar")}, 2, "unknown compression"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ferry(t, dockerEnv(d), c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", r.code, r.stderr, c.code, c.msg)
			}
		})
	}
	if out := d.Run(t, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("the daemon holds images after failed loads: %s", out)
	}
	t.Run("refuses a terminal", func(t *testing.T) {
		// script gives ferry a pseudo-terminal as stdout.
		cmd := exec.Command(testenv.Require(t, "script"), "-qec", ferryBin+" save app:1", os.DevNull)
		cmd.Env = append(os.Environ(), dockerEnv(d)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "refusing to write a bundle to a terminal") {
			t.Fatalf("%v: %s", err, out)
		}
	})
	if _, err := os.Stat(layout); !os.IsNotExist(err) {
		t.Errorf("a failed load into a new OCI layout left the directory: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*out.tar*")); len(left) != 0 {
		t.Errorf("failed saves left %v", left)
	}
}

// TestDefaultStore loads into the default OCI store when no docker daemon answers.
func TestDefaultStore(t *testing.T) {
	d := testenv.StartDocker(t)
	d.BusyboxImage(t, "app:1", nil)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "app.tar")
	mustFerry(t, dockerEnv(d), "save", "app:1", "-o", bundle, "-q")
	data := filepath.Join(dir, "data")
	r := ferry(t, []string{"DOCKER_HOST=unix://" + filepath.Join(dir, "none.sock"), "XDG_DATA_HOME=" + data}, "load", "-i", bundle)
	store := filepath.Join(data, "ferry", "oci")
	if r.code != 0 || !strings.Contains(r.stderr, "oci:"+store) {
		t.Fatalf("exit %d, stderr %q: want a load into oci:%s", r.code, r.stderr, store)
	}
	run(t, "skopeo", "inspect", "--raw", "oci:"+store+":app:1")
}

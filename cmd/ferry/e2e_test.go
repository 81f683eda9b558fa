package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// ferryBin is the binary under test, built once by TestMain.
var ferryBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-bin-")
	if err != nil {
		panic(err)
	}
	ferryBin = filepath.Join(dir, "ferry")
	// What ferry keeps in the user's cache (content indexes) stays with the tests.
	os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	// Static, as make build makes it: the binary a send copies to its hosts as their helper.
	build := exec.Command("go", "build", "-o", ferryBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a run of ferry printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// ferry runs the binary with env added to the test's environment.
func ferry(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ferryBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running ferry %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// mustFerry runs ferry and fails the test unless it exits 0.
func mustFerry(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := ferry(t, env, args...)
	if r.code != 0 {
		t.Fatalf("ferry %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// run runs another program (skopeo, podman) and returns its stdout.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(testenv.Require(t, name), args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, exit.Stderr)
		}
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

func dockerEnv(d *testenv.Docker) []string { return []string{"DOCKER_HOST=" + d.Host} }

// twoApps makes two images sharing a busybox base, each with its own /marker.
func twoApps(t *testing.T, d *testenv.Docker) {
	d.BusyboxImage(t, "base:1", map[string]string{"/etc/base": "base\n"})
	d.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "one\n"})
	d.DeriveImage(t, "app:2", "base:1", map[string]string{"marker": "two\n"})
}

func summary(t *testing.T, bundle string) archive.Summary {
	t.Helper()
	var s archive.Summary
	if err := json.Unmarshal([]byte(mustFerry(t, nil, "ls", "--json", bundle)), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// tagged returns the image of a summary that has tag.
func tagged(t *testing.T, s archive.Summary, tag string) archive.ImageSummary {
	t.Helper()
	for _, img := range s.Images {
		for _, have := range img.Tags {
			if have == tag {
				return img
			}
		}
	}
	t.Fatalf("no image tagged %s in %+v", tag, s.Images)
	return archive.ImageSummary{}
}

// TestDockerRoundTrip saves two images sharing a base from one daemon and loads them into
// another with ferry and with docker itself, and into an OCI layout read back by skopeo.
func TestDockerRoundTrip(t *testing.T) {
	src, dst := testenv.StartDocker(t), testenv.StartDocker(t)
	twoApps(t, src)
	dir := t.TempDir()
	gz, plain := filepath.Join(dir, "apps.tar.gz"), filepath.Join(dir, "apps.tar")
	mustFerry(t, dockerEnv(src), "save", "app:1", "app:2", "-o", gz)
	mustFerry(t, dockerEnv(src), "save", "app:1", "app:2", "-o", plain, "-q")

	t.Run("reproducible", func(t *testing.T) {
		again := filepath.Join(dir, "again.tar.gz")
		mustFerry(t, dockerEnv(src), "save", "app:1", "app:2", "-o", again, "-q")
		a, _ := os.ReadFile(gz)
		b, _ := os.ReadFile(again)
		if !bytes.Equal(a, b) {
			t.Fatal("saving the same images twice gave different bytes")
		}
	})
	t.Run("progress json", func(t *testing.T) {
		r := ferry(t, dockerEnv(src), "save", "app:1", "--progress=json", "-o", filepath.Join(dir, "p.tar"))
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		var last struct {
			Event  string
			Bytes  int64
			Action string
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || r.code != 0 {
			t.Fatalf("exit %d, stderr %q: %v", r.code, r.stderr, err)
		}
		if last.Event != "done" || last.Action != "saving" || last.Bytes == 0 {
			t.Fatalf("last progress line %+v", last)
		}
	})
	t.Run("ls", func(t *testing.T) {
		s := summary(t, gz)
		if len(s.Images) != 2 || s.Compression != "gzip" {
			t.Fatalf("ls: %+v", s)
		}
		if !s.Images[0].Layers[0].Shared || s.Images[0].Layers[1].Shared {
			t.Errorf("want the base layer shared and the app layer not: %+v", s.Images[0].Layers)
		}
		if s.UniqueBytes >= s.Bytes {
			t.Errorf("unique bytes %d should be below total %d: the base is stored once", s.UniqueBytes, s.Bytes)
		}
		if out := mustFerry(t, nil, "verify", gz); !strings.Contains(out, "OK") {
			t.Errorf("verify: %s", out)
		}
	})
	t.Run("ferry load", func(t *testing.T) {
		out := mustFerry(t, dockerEnv(dst), "load", "-i", gz)
		if !strings.Contains(out, "Loaded image: app:1") || !strings.Contains(out, "Loaded image: app:2") {
			t.Fatalf("load printed %q", out)
		}
		if got := dst.Cat(t, "app:2", "/marker"); got != "two\n" {
			t.Fatalf("app:2 /marker = %q", got)
		}
		dst.Run(t, "rmi", "app:1", "app:2")
	})
	for _, bundle := range []string{plain, gz} {
		t.Run("docker load "+filepath.Base(bundle), func(t *testing.T) {
			dst.Run(t, "load", "-i", bundle)
			if got := dst.Cat(t, "app:1", "/marker"); got != "one\n" {
				t.Fatalf("app:1 /marker = %q", got)
			}
			dst.Run(t, "rmi", "app:1", "app:2")
		})
	}
	t.Run("oci store", func(t *testing.T) {
		layout := filepath.Join(dir, "layout")
		mustFerry(t, nil, "load", "-i", gz, "--to", "oci:"+layout)
		out := run(t, "skopeo", "inspect", "--raw", "oci:"+layout+":app:2")
		if !strings.Contains(out, "layers") {
			t.Fatalf("skopeo inspect: %s", out)
		}
		// and back out of the layout into docker
		back := filepath.Join(dir, "back.tar")
		mustFerry(t, nil, "save", "oci:"+layout+":app:2", "-o", back)
		mustFerry(t, dockerEnv(dst), "load", "-i", back)
		if got := dst.Cat(t, "app:2", "/marker"); got != "two\n" {
			t.Fatalf("app:2 via OCI layout: /marker = %q", got)
		}
	})
	t.Run("skopeo reads the bundle", func(t *testing.T) {
		run(t, "skopeo", "inspect", "docker-archive:"+plain+":app:1")
		var inspect struct{ Digest string }
		json.Unmarshal([]byte(run(t, "skopeo", "inspect", "oci-archive:"+plain+":2")), &inspect) //nolint:errcheck
		if want := tagged(t, summary(t, plain), "app:2").Manifest; inspect.Digest != want {
			t.Fatalf("skopeo sees app:2 as %s in the OCI part, ferry wrote %s", inspect.Digest, want)
		}
		// skopeo copies out of both halves into a layout it writes itself.
		layout := filepath.Join(dir, "skopeo-layout")
		run(t, "skopeo", "copy", "--quiet", "docker-archive:"+plain+":app:1", "oci:"+layout+":from-docker")
		run(t, "skopeo", "copy", "--quiet", "oci-archive:"+plain+":2", "oci:"+layout+":from-oci")
	})
	t.Run("podman load", func(t *testing.T) {
		// podman 4.3 loads no compressed docker-archive, ferry's or anyone's: give it the plain one.
		root := []string{"--root", filepath.Join(dir, "podman"), "--runroot", filepath.Join(dir, "podman-run")}
		t.Cleanup(func() { exec.Command("podman", append(root, "system", "reset", "-f")...).Run() }) //nolint:errcheck
		run(t, "podman", append(root, "load", "-q", "-i", plain)...)
		id := strings.TrimSpace(run(t, "podman", append(root, "image", "inspect", "--format", "{{.ID}}", "app:2")...))
		if want := tagged(t, summary(t, plain), "app:2").ID; "sha256:"+id != want {
			t.Fatalf("podman loaded app:2 as %s, want %s", id, want)
		}
	})
}

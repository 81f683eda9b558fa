// Package examples holds runnable scripts that show ferry at work; the tests run them
// against real docker daemons.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
)

// buildFerry builds the binary the scripts run.
func buildFerry(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("building ferry: %v\n%s", err, out)
	}
	return bin
}

func script(t *testing.T, env []string, path string, args ...string) string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{path}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, out)
	}
	return string(out)
}

func TestOfflineMigration(t *testing.T) {
	src, dst := testenv.StartDocker(t), testenv.StartDocker(t)
	src.BusyboxImage(t, "base:1", nil)
	src.DeriveImage(t, "web:1", "base:1", map[string]string{"marker": "web\n"})
	src.DeriveImage(t, "db:1", "base:1", map[string]string{"marker": "db\n"})
	carry := t.TempDir()
	script(t, []string{"FERRY=" + buildFerry(t), "SRC_DOCKER_HOST=" + src.Host, "DST_DOCKER_HOST=" + dst.Host},
		"offline-migration/migrate.sh", carry, "web:1", "db:1")
	for ref, want := range map[string]string{"web:1": "web\n", "db:1": "db\n"} {
		if got := dst.Cat(t, ref, "/marker"); got != want {
			t.Errorf("%s: /marker = %q, want %q", ref, got, want)
		}
	}

	// A bundle damaged on the way is refused before anything is loaded.
	bundle := filepath.Join(carry, "images.tar.gz")
	data, _ := os.ReadFile(bundle)
	data[len(data)/2] ^= 0xff
	os.WriteFile(bundle, data, 0o644)
	os.Remove(bundle + ".sha256")
	dst.Run(t, "rmi", "web:1", "db:1")
	cmd := exec.Command(buildFerry(t), "load", "-i", bundle)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+dst.Host)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("a damaged bundle loaded: %s", out)
	}
	if out := dst.Run(t, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("images after a failed load: %s", out)
	}
}

func TestDemo(t *testing.T) {
	testenv.Require(t, "dockerd")
	out := script(t, []string{"FERRY=" + buildFerry(t)}, "demo/run.sh")
	if !strings.Contains(out, "hello from app:2") || !strings.Contains(out, "OK: 2 images") {
		t.Fatalf("demo output:\n%s", out)
	}
}

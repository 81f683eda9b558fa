// Package examples holds runnable scripts that show ferry at work; the tests run them
// against real docker daemons.
package examples

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

func TestAirgapDelta(t *testing.T) {
	near, far := testenv.StartDocker(t), testenv.StartDocker(t)
	near.BusyboxImage(t, "base:1", nil)
	near.DeriveImage(t, "app:2", "base:1", map[string]string{"marker": "v2\n"})
	far.BusyboxImage(t, "base:1", nil) // the same rootfs: the same layer
	carry := t.TempDir()
	out := script(t, []string{"FERRY=" + buildFerry(t), "NEAR_DOCKER_HOST=" + near.Host, "FAR_DOCKER_HOST=" + far.Host},
		"airgap-delta/airgap.sh", carry, "app:2")
	if !strings.Contains(out, "1 layers left out") {
		t.Errorf("the delta should leave out the base layer:\n%s", out)
	}
	if got := far.Cat(t, "app:2", "/marker"); got != "v2\n" {
		t.Fatalf("/marker = %q", got)
	}
}

func TestBackupRotation(t *testing.T) {
	d := testenv.StartDocker(t)
	d.BusyboxImage(t, "base:1", nil)
	pool := filepath.Join(t.TempDir(), "pool")
	ferry := buildFerry(t)
	for night := 1; night <= 4; night++ {
		n := strconv.Itoa(night)
		d.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "night " + n + "\n"})
		script(t, []string{"FERRY=" + ferry, "DOCKER_HOST=" + d.Host, "NIGHT=nightly-" + n},
			"backup-rotation/backup.sh", pool, "2", "base:1", "app:1")
	}
	out, err := exec.Command(ferry, "pool", "ls", pool).Output()
	if err != nil || strings.Contains(string(out), "nightly-2") || !strings.Contains(string(out), "nightly-3") || !strings.Contains(string(out), "nightly-4") {
		t.Fatalf("want nights 3 and 4 kept: %v\n%s", err, out)
	}
	restore := filepath.Join(t.TempDir(), "restore.tar")
	if out, err := exec.Command(ferry, "pool", "export", pool, "nightly-3", "-o", restore).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	d.Run(t, "rmi", "app:1")
	d.Run(t, "load", "-i", restore)
	if got := d.Cat(t, "app:1", "/marker"); got != "night 3\n" {
		t.Fatalf("restored night 3: /marker = %q", got)
	}
}

// TestDemo runs make demo's script: a bundle, a pool of two bundles sharing a base, and a
// send over a throwaway sshd to a daemon that has the base, where the image then runs.
func TestDemo(t *testing.T) {
	testenv.Require(t, "dockerd")
	testenv.Require(t, "sshd")
	testenv.Require(t, "ssh-keygen")
	out := script(t, []string{"FERRY=" + buildFerry(t), "DOCKER_HOST=", "SSH_AUTH_SOCK="}, "demo/run.sh")
	if !strings.Contains(out, "OK: 2 images") {
		t.Errorf("the bundle did not verify:\n%s", out)
	}
	// pool stats: "2 bundles, 4.0 MB in all, 2.0 MB unique, …"
	if m := regexp.MustCompile(`2 bundles, ([0-9.]+ [kMG]?B) in all, ([0-9.]+ [kMG]?B) unique`).FindStringSubmatch(out); m == nil {
		t.Errorf("no pool stats of two bundles:\n%s", out)
	} else if all, unique := bytesOf(t, m[1]), bytesOf(t, m[2]); unique >= all*3/4 {
		t.Errorf("the pool stores %s unique of %s in all: the shared base should count once", m[2], m[1])
	}
	// send's summary table: HOST  SENT  FULL  LAYERS SENT  RESULT
	m := regexp.MustCompile(`(?m)^ssh://\S+\s+([0-9.]+ [kMG]?B)\s+([0-9.]+ [kMG]?B)\s+(\d+) of (\d+)\s+loaded app:2$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no send summary for app:2:\n%s", out)
	}
	if sent, full := bytesOf(t, m[1]), bytesOf(t, m[2]); sent >= full {
		t.Errorf("sent %s of %s in full: the far host has the base, less should cross", m[1], m[2])
	}
	if m[3] != "1" || m[4] != "2" {
		t.Errorf("layers sent: %s of %s, want 1 of 2 (the base stays)", m[3], m[4])
	}
	if !strings.Contains(out, "on the far host:\nhello from app:2\n") {
		t.Errorf("app:2 did not run on the far host:\n%s", out)
	}
}

// bytesOf parses a size as ferry prints it: "2.2 kB", "1.2 MB".
func bytesOf(t *testing.T, s string) float64 {
	t.Helper()
	num, unit, _ := strings.Cut(s, " ")
	f, err := strconv.ParseFloat(num, 64)
	i := strings.Index("BkMGT", unit[:1])
	if err != nil || i < 0 {
		t.Fatalf("size %q", s)
	}
	return f * math.Pow(1000, float64(i))
}

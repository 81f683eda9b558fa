package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
)

// TestSendDockerKilled kills ferry send into a docker 20.10 host over SSH (SIGKILL, once the
// host has loaded the steps of three of eight 16 MiB layers), then sends again: the second
// run moves no more than the layers the host still lacks, the image runs, and no step image
// is left.
func TestSendDockerKilled(t *testing.T) {
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	h := startSSHHost(t, pub)
	known := h.sshd.KnownHosts(t)
	const layers, size = 8, 16 << 20
	files := []map[string]string{{"marker": "killed\n"}}
	for i := range layers {
		files = append(files, map[string]string{fmt.Sprintf("data%d", i): string(testenv.RandomData(size + i))})
	}
	bundle := writeBundle(t, testenv.BusyboxV1(t, files...), "big:1")
	args := []string{"send", bundle, "-H", h.dest, "--known-hosts", known, "-i", key, "-q"}
	env := []string{"HOME=" + home, "SSH_AUTH_SOCK="}

	// stepped returns how many layers the host's largest step image has.
	stepped := func() int {
		out, _ := h.docker.RunErr("images", "-a", "-q", "--filter", "label="+store.StepLabel)
		most := 0
		for _, id := range strings.Fields(out) {
			n, _ := h.docker.RunErr("image", "inspect", "-f", "{{len .RootFS.Layers}}", id)
			if k, err := strconv.Atoi(strings.TrimSpace(n)); err == nil && k > most {
				most = k
			}
		}
		return most
	}
	cmd := exec.Command(ferryBin, args...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); stepped() < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	held := stepped() // busybox, the marker and the data layers loaded
	if held < 5 || held == len(files)+1 {
		t.Fatalf("killed with %d of %d layers loaded, want some but not all", held, len(files)+1)
	}
	if out := h.docker.Run(t, "images", "--format", "{{.Repository}}"); strings.Contains(out, "big") {
		t.Fatalf("a killed send named the image: %s", out)
	}

	out := mustFerry(t, env, args...)
	t.Logf("killed with %d layers held; then:\n%s", held, out)
	m := regexp.MustCompile(`\s([0-9.]+) MB\s+([0-9.]+) MB\s+\d+ of \d+`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	sent, _ := strconv.ParseFloat(m[1], 64)
	left := float64((len(files)+1-held)*size) / 1e6
	if sent > left+1 {
		t.Errorf("the second run sent %.1f MB; the host lacked %.1f MB of layers", sent, left)
	}
	if got := h.docker.Cat(t, "big:1", "/marker"); got != "killed\n" {
		t.Errorf("cat /marker: %q", got)
	}
	if out := h.docker.Run(t, "images", "-a", "-q", "--filter", "dangling=true"); strings.TrimSpace(out) != "" {
		t.Errorf("untagged images after the send: %s", out)
	}
}

// writeBundle writes img, tagged tag, as a plain bundle in a temporary directory and returns
// its path.
func writeBundle(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(img, []string{tag}, src); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := archive.Write(context.Background(), f, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

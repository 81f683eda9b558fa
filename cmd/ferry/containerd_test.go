package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestSendContainerdKilled kills ferry send mid-blob into a containerd over SSH (SIGKILL,
// once the node's ingest holds a third of the blob), then sends again: the second run
// moves about the rest, and the image runs.
func TestSendContainerdKilled(t *testing.T) {
	c := testenv.StartContainerd(t)
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	known := sshd.KnownHosts(t)
	const size = 128 << 20
	img := testenv.BusyboxV1(t, map[string]string{"marker": "killed\n", "data": string(testenv.RandomData(size))})
	bundle := writeBundle(t, img, "big:1")
	args := []string{"send", bundle, "-H", "ssh://root@" + sshd.Addr + c.Socket, "--to", "containerd:k8s.io",
		"--known-hosts", known, "-i", key, "-q"}
	env := []string{"HOME=" + home, "SSH_AUTH_SOCK="}

	// The node's content store is under its sandbox directory, which this machine sees.
	ingests := filepath.Join(filepath.Dir(c.Socket), "root", "io.containerd.content.v1.content", "ingest", "*", "data")
	cmd := exec.Command(ferryBin, args...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var written int64
	for deadline := time.Now().Add(time.Minute); written < size/3 && time.Now().Before(deadline); {
		paths, _ := filepath.Glob(ingests)
		for _, p := range paths {
			if fi, err := os.Stat(p); err == nil && fi.Size() > written {
				written = fi.Size()
			}
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if written < size/3 {
		t.Fatalf("the ingest never reached a third of the blob (%d bytes)", written)
	}
	if out := c.Ctr(t, "-n", "k8s.io", "images", "ls", "-q"); strings.Contains(out, "big") {
		t.Fatalf("a killed send named the image: %s", out)
	}
	active := c.Ctr(t, "-n", "k8s.io", "content", "active")
	t.Logf("killed after the ingest held %d bytes; ingests:\n%s", written, active)

	out := mustFerry(t, env, args...)
	t.Logf("%s", out)
	m := regexp.MustCompile(`\s([0-9.]+) MB\s+([0-9.]+) MB\s+1 of 2`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	sent, _ := strconv.ParseFloat(m[1], 64)
	full, _ := strconv.ParseFloat(m[2], 64)
	left := full - float64(written)/1e6
	if sent > left+8 || sent < left-80 {
		t.Errorf("the second run sent %.1f MB of %.1f; %.1f MB were left after the kill", sent, full, left)
	}
	if got := c.Ctr(t, "-n", "k8s.io", "run", "--rm", "docker.io/library/big:1", "killed", "cat", "/marker"); got != "killed\n" {
		t.Errorf("cat /marker: %q", got)
	}
}

package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Require returns the path of binary name, or skips the test when it is missing — unless
// FERRY_TEST_REQUIRE=1, in which case it fails the test (t.Fatalf) naming the binary. Every
// test that runs a binary is a long test: with -short it is skipped.
func Require(t testing.TB, name string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("runs %s: a long test, skipped with -short", name)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// Daemons live in sbin, which may be missing from PATH.
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("FERRY_TEST_REQUIRE") == "1" {
		t.Fatalf("required binary %q not found (FERRY_TEST_REQUIRE=1)", name)
	}
	t.Skipf("binary %q not found", name)
	return ""
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("FreePort: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a background process whose output goes to a log file.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

func startProc(t testing.TB, logPath string, env []string, name string, args ...string) *proc {
	t.Helper()
	// Own process group, so a SIGKILL also reaches helpers (dockerd's containerd).
	return startProcAttr(t, logPath, env, name, args, &syscall.SysProcAttr{Setpgid: true})
}

func startProcAttr(t testing.TB, logPath string, env []string, name string, args []string, attr *syscall.SysProcAttr) *proc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create log: %v", err)
	}
	defer f.Close() // the child keeps its own copy
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env = f, f, env
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs the process group.
func (p *proc) stop(grace time.Duration) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// waitReady polls ready until it returns nil, the process exits or timeout passes.
// On failure it fails the test with the tail of the process log.
func (p *proc) waitReady(t testing.TB, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited before it was ready (%v); log tail:\n%s", what, p.cmd.ProcessState, tail(p.log))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v; log tail:\n%s", what, timeout, err, tail(p.log))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the last few KB of a file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 4096
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// unmountBelow lazily unmounts every mount point at or below dir, deepest first.
func unmountBelow(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- { // mountinfo lists parents before children
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount decodes the octal escapes (\040 etc.) used in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if c, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// GonePID returns the ID of a process of this machine that has exited: what a lock file or a
// temporary file names after its process was killed.
func GonePID(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatalf("GonePID: %v", err)
	}
	return cmd.Process.Pid
}

// LivePID returns the ID of a process that runs until the test ends: another run at work.
func LivePID(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("LivePID: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// printed runs a command through run and returns what it printed. A container that exits at
// once loses its output now and then under load, to the shim of the containerd that runs it
// ("stream copy error: reading from a closed fifo", with ctr 1.7 and 2.1 and docker on its
// containerd): a `run --rm` that printed nothing and succeeded is run again, up to twice. A
// container that truly prints nothing still prints nothing.
func printed(args []string, run func() (string, error)) (string, error) {
	out, err := run()
	for range 2 {
		if err != nil || out != "" || !slices.Contains(args, "run") || !slices.Contains(args, "--rm") {
			break
		}
		out, err = run()
	}
	return out, err
}

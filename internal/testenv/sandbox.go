package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sandboxPrefix names the host directories of sandboxes; sweepSandboxes removes those of
// dead test processes.
const sandboxPrefix = "ferry-sbx-"

// sandbox runs programs of a root (see Root) in a mount and PID namespace of their own: the
// root bind-mounted onto itself (runc refuses a root that is not a mount point) and
// read-only, a fresh /proc, /sys and /dev from the host (rbind, rslave), tmpfs on /run, the
// host's temp directory at the same path (so paths under t.TempDir() and the sandbox's
// directory mean the same inside and out) and a directory of its own on /var/tmp. Its init
// is tini running one main command; more commands join it with nsenter. Nothing mounted
// inside is seen by the host, and all of it goes when the init dies: on stop, when the
// test process dies (parent-death signal), or at the latest when sweepSandboxes finds it.
type sandbox struct {
	Dir  string // on the host, short (sockets live there), also visible inside at the same path
	root string
	p    *proc // unshare
	init int   // host pid of the namespace's init (tini)
}

// setupScript runs, in the new namespaces, as PID 1 on the host's sh, then chroots into
// the root and executes tini, which runs the main command once the namespace is ready.
const setupScript = `set -eu
root=$1 dir=$2 n=$3
shift 3
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mkdir -p "$dir/var-tmp"
mount --bind "$dir/var-tmp" "$root/var/tmp"
while [ "$n" -gt 0 ]; do # host directories, at the same path inside
  [ -d "$root$1" ] || mkdir -p "$root$1"
  mount --bind "$1" "$root$1"
  shift; n=$((n - 1))
done
mount -o remount,bind,ro "$root"
exec chroot "$root" /usr/bin/tini -- /bin/sh -c ': >"$0/ready"; exec "$@"' "$dir" "$@"
`

// sandboxEnv is the environment of programs in a sandbox.
func sandboxEnv(dir string) []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"LANG=C.UTF-8",
	}
}

// startSandbox starts a sandbox whose init runs main (a daemon, or sleep) with its output
// in DIR/name.log, and registers a cleanup that stops it and removes DIR.
func startSandbox(t testing.TB, r *Root, name string, main func(dir string) []string) *sandbox {
	t.Helper()
	root := r.Path(t)
	unshare := Require(t, "unshare")
	sweepSandboxes()
	dir := shortDir(t, sandboxPrefix+name+"-")
	for _, sub := range []string{"home", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("sandbox: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(procIdentity(os.Getpid())), 0o644); err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	s := &sandbox{Dir: dir, root: root}
	binds := []string{filepath.Clean(os.TempDir())}
	if !strings.HasPrefix(dir, binds[0]+"/") {
		binds = append(binds, filepath.Dir(dir))
	}
	args := []string{"--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
		"/bin/sh", "-c", setupScript, "sh", root, dir, strconv.Itoa(len(binds))}
	args = append(append(args, binds...), main(dir)...)
	s.p = startProcAttr(t, filepath.Join(dir, name+".log"), sandboxEnv(dir), unshare, args,
		&syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL})
	t.Cleanup(func() {
		s.stop(20 * time.Second)
		if t.Failed() {
			t.Logf("%s log tail:\n%s", name, tail(s.p.log))
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("sandbox cleanup: %v", err)
		}
	})
	s.p.waitReady(t, name+" sandbox", 30*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
			return err
		}
		if kids := descendants(s.p.cmd.Process.Pid); len(kids) > 0 {
			s.init = kids[0]
			return nil
		}
		return fmt.Errorf("no init below unshare %d", s.p.cmd.Process.Pid)
	})
	return s
}

// stop asks the init to stop (tini passes SIGTERM on to the main command), waits up to
// grace, then kills the namespace.
func (s *sandbox) stop(grace time.Duration) {
	if s.init > 0 {
		syscall.Kill(s.init, syscall.SIGTERM)
	} else {
		syscall.Kill(-s.p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-s.p.done:
	case <-time.After(grace):
		if s.init > 0 {
			syscall.Kill(s.init, syscall.SIGKILL) // the kernel kills everything in its namespace
		}
		syscall.Kill(-s.p.cmd.Process.Pid, syscall.SIGKILL)
		<-s.p.done
	}
}

// command returns a command running name in the sandbox (its mounts, PID namespace and
// root), with the sandbox's environment plus env.
func (s *sandbox) command(env []string, name string, args ...string) *exec.Cmd {
	nsenter := append([]string{"--target", strconv.Itoa(s.init), "--mount", "--pid", "--root", "--wd", "--", name}, args...)
	cmd := exec.Command("nsenter", nsenter...)
	cmd.Env = append(sandboxEnv(s.Dir), env...)
	return cmd
}

// run runs name in the sandbox and returns its stdout; it fails the test with stderr on error.
func (s *sandbox) run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	out, err := printed(args, func() (string, error) {
		var stdout bytes.Buffer
		stderr.Reset()
		cmd := s.command(env, name, args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), err
	})
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// runErr runs name in the sandbox and returns its combined output and error.
func (s *sandbox) runErr(env []string, name string, args ...string) (string, error) {
	return printed(args, func() (string, error) {
		out, err := s.command(env, name, args...).CombinedOutput()
		return string(out), err
	})
}

// Log returns what the sandbox's main command logged so far.
func (s *sandbox) Log() string {
	b, _ := os.ReadFile(s.p.log)
	return string(b)
}

// shortDir makes a directory whose path leaves room for unix sockets (< 100 bytes).
func shortDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err == nil && len(dir) > 60 {
		os.Remove(dir)
		dir, err = os.MkdirTemp("/tmp", prefix)
	}
	if err != nil {
		t.Fatalf("making a directory for sockets: %v", err)
	}
	return dir
}

// procIdentity is "PID STARTTIME", which tells a live process from a later one that got
// the same pid; "" if pid is gone.
func procIdentity(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return fmt.Sprintf("%d %s", pid, f[19]) // field 22, starttime
}

// sweepSandboxes removes the sandboxes of test processes that died without cleaning up:
// it kills every process whose command line names such a sandbox's directory (the
// unshare, the namespace's init, its daemons; the kernel takes the rest of the namespace
// and its mounts with the init) and removes the directory.
func sweepSandboxes() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), sandboxPrefix+"*"))
	more, _ := filepath.Glob(filepath.Join("/tmp", sandboxPrefix+"*"))
	for _, dir := range append(dirs, more...) {
		owner, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue // just being made, or not ours
		}
		f := strings.Fields(string(owner))
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || procIdentity(pid) == string(owner) {
			continue // its test is still running
		}
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, pdir := range procs {
			cmdline, _ := os.ReadFile(filepath.Join(pdir, "cmdline"))
			names := bytes.Contains(cmdline, []byte(dir+"/")) || bytes.Contains(cmdline, []byte(dir+"\x00"))
			if p, err := strconv.Atoi(filepath.Base(pdir)); err == nil && p != os.Getpid() && names {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		time.Sleep(200 * time.Millisecond)
		os.RemoveAll(dir)
	}
}

package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Flavor names a kind of docker daemon a test can start with StartDockerFlavor.
type Flavor string

const (
	// Docker2010 is the host's dockerd (Debian 12's docker.io 20.10, overlay2), what
	// StartDocker starts.
	Docker2010 Flavor = "docker20.10"
	// Docker26Classic is Debian 13's dockerd 26.1 from the trixie root with the classic
	// image store (graph driver overlay2).
	Docker26Classic Flavor = "docker26"
	// Docker26Containerd is Debian 13's dockerd 26.1 on the containerd image store
	// (features.containerd-snapshotter), as fresh installs of docker 29 are.
	Docker26Containerd Flavor = "docker26-containerd"
)

// DockerFlavors are all flavors, for one subtest each.
var DockerFlavors = []Flavor{Docker2010, Docker26Classic, Docker26Containerd}

// StartDockerFlavor starts a throwaway dockerd of flavor f, like StartDocker. The 26
// flavors run from the trixie root (TrixieRoot: skipped without it) in a sandbox of their
// own; the host's docker CLI talks to them. Containers need `--network none` and images
// `--pull=never`, as on StartDocker's daemons.
func StartDockerFlavor(t testing.TB, f Flavor) *Docker {
	t.Helper()
	switch f {
	case Docker2010:
		d := StartDocker(t)
		d.Flavor = f
		return d
	case Docker26Classic, Docker26Containerd:
	default:
		t.Fatalf("StartDockerFlavor: unknown flavor %q", f)
	}
	d := &Docker{Flavor: f, docker: Require(t, "docker"), Namespace: "moby",
		ContainerdStore: f == Docker26Containerd}
	s := startSandbox(t, "d26", func(dir string) []string {
		config := `{}`
		if d.ContainerdStore {
			config = `{"features": {"containerd-snapshotter": true}}`
		}
		if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(config), 0o644); err != nil {
			t.Fatalf("StartDockerFlavor: %v", err)
		}
		d.Host = "unix://" + filepath.Join(dir, "docker.sock")
		d.Root = filepath.Join(dir, "data")
		// The exec root beside the socket, named docker, as /var/run/docker is beside
		// /var/run/docker.sock: dockerd starts its own containerd (CRI disabled) with its
		// socket there, where ferry looks for a daemon's containerd.
		exec := filepath.Join(dir, "docker")
		d.Containerd = filepath.Join(exec, "containerd", "containerd.sock")
		return []string{"dockerd", "--config-file", filepath.Join(dir, "daemon.json"),
			"--data-root", d.Root, "--exec-root", exec, "--pidfile", filepath.Join(dir, "docker.pid"),
			"-H", d.Host, "--bridge=none", "--iptables=false", "--ip6tables=false"}
	})
	t.Cleanup(func() { d.removeContainers(t) }) // runs before the sandbox's cleanup

	sock := d.Host[len("unix://"):]
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
	defer client.CloseIdleConnections()
	s.p.waitReady(t, "dockerd 26", 90*time.Second, func() error {
		return httpOK(client, "http://docker/_ping")
	})
	return d
}

// Containerd is a throwaway containerd 1.7 from the trixie root, with its own root, state
// and addresses; the CRI plugin disabled unless ContainerdOptions.CRI.
type Containerd struct {
	Socket string // the grpc address, a unix socket path

	s *sandbox
}

// ContainerdOptions change how StartContainerd configures a containerd.
type ContainerdOptions struct {
	// CRI enables the CRI plugin, as on a Kubernetes node: kubelet's image and runtime
	// services on the same socket (runtime.v1), images of namespace k8s.io. Its CNI
	// directories are empty ones of its own; the pause image is never pulled, because no
	// pod sandbox is started.
	CRI bool
}

// StartContainerd starts a containerd from the trixie root (TrixieRoot: skipped without
// it), waits until it serves (and, with CRI, until the CRI plugin loaded) and registers a
// cleanup that stops it and removes its state. Tests pick their namespace (k8s.io as
// Kubernetes, moby as docker, default as ctr).
func StartContainerd(t testing.TB, opts ...ContainerdOptions) *Containerd {
	t.Helper()
	var o ContainerdOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	c := &Containerd{}
	c.s = startSandbox(t, "ctd", func(dir string) []string {
		c.Socket = filepath.Join(dir, "containerd.sock")
		disabled := `["io.containerd.grpc.v1.cri"]`
		if o.CRI {
			disabled = `[]`
		}
		config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = %s
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.8"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, c.Socket, c.Socket+".ttrpc",
			filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "net.d"))
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
			t.Fatalf("StartContainerd: %v", err)
		}
		return []string{"containerd", "--config", filepath.Join(dir, "config.toml")}
	})
	c.s.p.waitReady(t, "containerd", 60*time.Second, func() error {
		_, err := c.s.runErr(nil, "ctr", "--address", c.Socket, "version")
		return err
	})
	if o.CRI {
		// A plugin that fails to load leaves containerd serving without it.
		out := c.Ctr(t, "plugins", "ls", "id==cri")
		if !strings.Contains(out, " ok") {
			t.Fatalf("StartContainerd: the CRI plugin did not load:\n%s\nlog tail:\n%s", out, tail(c.s.p.log))
		}
	}
	return c
}

// Ctr runs ctr against this containerd (inside its sandbox, so `ctr run` works) and
// returns stdout; it fails the test with stderr on error. Host paths under the temp
// directory (t.TempDir()) are the same inside.
func (c *Containerd) Ctr(t testing.TB, args ...string) string {
	t.Helper()
	return c.s.run(t, nil, "ctr", append([]string{"--address", c.Socket}, args...)...)
}

// CtrErr is like Ctr but returns combined output and the error instead of failing.
func (c *Containerd) CtrErr(args ...string) (string, error) {
	return c.s.runErr(nil, "ctr", append([]string{"--address", c.Socket}, args...)...)
}

// Log returns what containerd logged so far.
func (c *Containerd) Log() string { return c.s.Log() }

// Tool is a command-line program from the trixie root (podman 5, skopeo 1.18) run in a
// sandbox that sees the host's temp directory at the same path: t.TempDir() paths, OCI
// layout directories and archives there work as arguments.
type Tool struct {
	name string
	args []string // before the caller's
	s    *sandbox
}

// Podman5 returns podman 5 with storage of its own (removed at cleanup), the cgroupfs
// cgroup manager and file events. Run it with `--network none` and `--pull=never`. The
// trixie root configures no unqualified-search-registries: podman 5 names a short name it
// loads from a docker archive localhost/NAME ("app:1" and "corpus/app:1" become
// "localhost/app:1" and "localhost/corpus/app:1"), and only that name finds it.
func Podman5(t testing.TB) *Tool {
	t.Helper()
	s := startSandbox(t, "podman", sleeper)
	return &Tool{name: "podman", s: s, args: []string{
		"--root", filepath.Join(s.Dir, "storage"), "--runroot", "/run/containers/storage",
		"--tmpdir", "/run/libpod", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
	}}
}

// Skopeo118 returns skopeo 1.18.
func Skopeo118(t testing.TB) *Tool {
	t.Helper()
	return &Tool{name: "skopeo", s: startSandbox(t, "skopeo", sleeper)}
}

// sleeper is the main command of a sandbox that only hosts commands.
func sleeper(string) []string { return []string{"sleep", "infinity"} }

// Run runs the tool with args and returns stdout; it fails the test with stderr on error.
func (tl *Tool) Run(t testing.TB, args ...string) string {
	t.Helper()
	return tl.s.run(t, nil, tl.name, append(tl.args[:len(tl.args):len(tl.args)], args...)...)
}

// RunErr is like Run but returns combined output and the error instead of failing.
func (tl *Tool) RunErr(args ...string) (string, error) {
	return tl.s.runErr(nil, tl.name, append(tl.args[:len(tl.args):len(tl.args)], args...)...)
}

// Wrapper returns a directory holding an executable named as the tool that runs it in its
// sandbox, with its arguments: on a PATH (a test's, or an sshd session's through
// SSHDOptions.SetEnv), programs that run "podman" run podman 5 with this tool's storage.
func (tl *Tool) Wrapper(t testing.TB) string {
	t.Helper()
	nsenter := Require(t, "nsenter")
	dir := t.TempDir()
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	script := "#!/bin/sh\nexec env -i"
	for _, kv := range sandboxEnv(tl.s.Dir) {
		script += " " + quote(kv)
	}
	script += " " + quote(nsenter) + " --target " + strconv.Itoa(tl.s.init) + " --mount --pid --root --wd -- " + quote(tl.name)
	for _, a := range tl.args {
		script += " " + quote(a)
	}
	script += ` "$@"` + "\n"
	if err := os.WriteFile(filepath.Join(dir, tl.name), []byte(script), 0o755); err != nil {
		t.Fatalf("Wrapper: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // sshd sessions of other users look in it too
		t.Fatalf("Wrapper: %v", err)
	}
	return dir
}

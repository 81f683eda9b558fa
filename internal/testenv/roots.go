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

// A Root is a Debian root that internal/scripts/root.sh builds once and caches (`make deps`),
// holding a newer toolchain than the host's bookworm one: dockerd, containerd, runc, podman,
// skopeo and tini. Its programs run in sandboxes (see sandbox).
type Root struct {
	// Name is the Debian release, root.sh's argument. The root is cached at
	// /var/cache/ferry/NAME; FERRY_NAME_ROOT (FERRY_TRIXIE_ROOT, FERRY_SID_ROOT) moves it.
	Name string
	// Docker, Containerd, Podman and Skopeo are the versions root.sh pins, major.minor.
	Docker, Containerd, Podman, Skopeo string
	// DockerClassic and DockerContainerd are the flavors of its dockerd: with the classic
	// image store and on the containerd image store.
	DockerClassic, DockerContainerd Flavor
}

var (
	// Trixie is Debian 13's root: docker 26.1, containerd 1.7, podman 5.4, skopeo 1.18.
	Trixie = &Root{Name: "trixie", Docker: "26.1", Containerd: "1.7", Podman: "5.4", Skopeo: "1.18",
		DockerClassic: Docker26Classic, DockerContainerd: Docker26Containerd}
	// Sid is Debian unstable's root: docker 28.5, containerd 2.1, podman 5.8, skopeo 1.22.
	Sid = &Root{Name: "sid", Docker: "28.5", Containerd: "2.1", Podman: "5.8", Skopeo: "1.22",
		DockerClassic: Docker28Classic, DockerContainerd: Docker28Containerd}
	// Roots are all roots, for one subtest each.
	Roots = []*Root{Trixie, Sid}
)

func (r *Root) String() string { return r.Name }

// Path returns where the root is, or skips the test when it is missing or unfinished, or
// when the test does not run as root (running programs from it needs root) — unless
// FERRY_TEST_REQUIRE=1, in which case it fails the test.
func (r *Root) Path(t testing.TB) string {
	t.Helper()
	env := "FERRY_" + strings.ToUpper(r.Name) + "_ROOT"
	root := os.Getenv(env)
	if root == "" {
		root = filepath.Join("/var/cache/ferry", r.Name)
	}
	root = filepath.Clean(root)
	var why string
	if _, err := os.Stat(filepath.Join(root, ".ferry-"+r.Name)); err != nil {
		why = fmt.Sprintf("no %s root at %s (build it with internal/scripts/root.sh %s or make deps; %s moves it)", r.Name, root, r.Name, env)
	} else if os.Geteuid() != 0 {
		why = fmt.Sprintf("the %s toolchain needs root", r.Name)
	}
	if why == "" {
		return root
	}
	if os.Getenv("FERRY_TEST_REQUIRE") == "1" {
		t.Fatalf("%s (FERRY_TEST_REQUIRE=1)", why)
	}
	t.Skip(why)
	return ""
}

// major is the major version of a version v, major.minor.
func major(v string) int {
	n, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	return n
}

// Flavor names a kind of docker daemon a test can start with StartDockerFlavor.
type Flavor string

const (
	// Docker2010 is the host's dockerd (Debian 12's docker.io 20.10, overlay2), what
	// StartDocker starts.
	Docker2010 Flavor = "docker20.10"
	// Docker26Classic is dockerd 26.1 from the trixie root with the classic image store
	// (graph driver overlay2).
	Docker26Classic Flavor = "docker26"
	// Docker26Containerd is dockerd 26.1 from the trixie root on the containerd image store
	// (features.containerd-snapshotter), as fresh installs of docker 29 are.
	Docker26Containerd Flavor = "docker26-containerd"
	// Docker28Classic is dockerd 28.5 from the sid root with the classic image store.
	Docker28Classic Flavor = "docker28"
	// Docker28Containerd is dockerd 28.5 from the sid root on the containerd image store.
	// It says in /info where its containerd is (docker 27 and later): its exec root is not
	// beside its socket, so that /info is the only way to find it.
	Docker28Containerd Flavor = "docker28-containerd"
)

// DockerFlavors are all flavors, for one subtest each.
var DockerFlavors = []Flavor{Docker2010, Docker26Classic, Docker26Containerd, Docker28Classic, Docker28Containerd}

// rootOf returns the root flavor f runs from, nil for the host's.
func rootOf(f Flavor) *Root {
	for _, r := range Roots {
		if f == r.DockerClassic || f == r.DockerContainerd {
			return r
		}
	}
	return nil
}

// StartDockerFlavor starts a throwaway dockerd of flavor f, like StartDocker. The flavors
// of a root (skipped without it, see Root.Path) run in a sandbox of their own; the host's
// docker CLI talks to them. Containers need `--network none` and images `--pull=never`, as
// on StartDocker's daemons.
func StartDockerFlavor(t testing.TB, f Flavor) *Docker {
	t.Helper()
	if f == Docker2010 {
		d := StartDocker(t)
		d.Flavor = f
		return d
	}
	r := rootOf(f)
	if r == nil {
		t.Fatalf("StartDockerFlavor: unknown flavor %q", f)
	}
	d := &Docker{Flavor: f, docker: Require(t, "docker"), Namespace: "moby", ContainerdStore: f == r.DockerContainerd}
	s := startSandbox(t, r, "dockerd", func(dir string) []string {
		config := `{}`
		if d.ContainerdStore {
			config = `{"features": {"containerd-snapshotter": true}}`
		}
		if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte(config), 0o644); err != nil {
			t.Fatalf("StartDockerFlavor: %v", err)
		}
		d.Host = "unix://" + filepath.Join(dir, "docker.sock")
		d.Root = filepath.Join(dir, "data")
		// dockerd starts its own containerd (CRI disabled) with its socket under the exec
		// root. Docker 26 does not say where: its exec root is beside the socket, named
		// docker, as /var/run/docker is beside /var/run/docker.sock, where ferry looks for a
		// daemon's containerd. Docker 27 and later say it in /info.
		exec := filepath.Join(dir, "docker")
		if major(r.Docker) >= 27 {
			exec = filepath.Join(dir, "exec")
		}
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
	s.p.waitReady(t, "dockerd "+r.Docker, 90*time.Second, func() error {
		return httpOK(client, "http://docker/_ping")
	})
	return d
}

// Containerd is a throwaway containerd from a root, with its own root, state and
// addresses; the CRI plugin disabled unless ContainerdOptions.CRI.
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

// StartContainerd starts containerd 1.7 from the trixie root: Trixie.StartContainerd.
func StartContainerd(t testing.TB, opts ...ContainerdOptions) *Containerd {
	t.Helper()
	return Trixie.StartContainerd(t, opts...)
}

// StartContainerd starts a containerd from the root (skipped without it, see Path), waits
// until it serves (and, with CRI, until the CRI plugin loaded) and registers a cleanup that
// stops it and removes its state. Tests pick their namespace (k8s.io as Kubernetes, moby as
// docker, default as ctr).
func (r *Root) StartContainerd(t testing.TB, opts ...ContainerdOptions) *Containerd {
	t.Helper()
	var o ContainerdOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	c := &Containerd{}
	c.s = startSandbox(t, r, "ctd", func(dir string) []string {
		c.Socket = filepath.Join(dir, "containerd.sock")
		config := containerdConfig(r.Containerd, dir, c.Socket, o.CRI)
		if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o644); err != nil {
			t.Fatalf("StartContainerd: %v", err)
		}
		return []string{"containerd", "--config", filepath.Join(dir, "config.toml")}
	})
	c.s.p.waitReady(t, "containerd "+r.Containerd, 60*time.Second, func() error {
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

// containerdConfig is the config file of a containerd of version (major.minor) whose root,
// state and sockets are under dir. Containerd 1.7 reads config version 2. Containerd 2
// reads version 2 too, and writes version 3 (`containerd config default`), where the CRI
// plugin is three, configured and disabled apart: the grpc service, the image service
// (io.containerd.cri.v1.images, with the pause image) and the runtime
// (io.containerd.cri.v1.runtime, with CNI's directories, bin_dirs a list).
func containerdConfig(version, dir, socket string, cri bool) string {
	cniBin, cniConf := filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "net.d")
	configVersion, criPlugins := 2, []string{"io.containerd.grpc.v1.cri"}
	criConfig := fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.8"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, cniBin, cniConf)
	if major(version) >= 2 {
		configVersion = 3
		criPlugins = append(criPlugins, "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime")
		criConfig = fmt.Sprintf(`[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "registry.k8s.io/pause:3.10"
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = [%q]
  conf_dir = %q
`, cniBin, cniConf)
	}
	disabled := "[]"
	if !cri {
		disabled = `["` + strings.Join(criPlugins, `", "`) + `"]`
	}
	return fmt.Sprintf(`version = %d
root = %q
state = %q
disabled_plugins = %s
[grpc]
  address = %q
[ttrpc]
  address = %q
%s`, configVersion, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, socket, socket+".ttrpc", criConfig)
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

// Tool is a command-line program from a root (podman, skopeo) run in a sandbox that sees
// the host's temp directory at the same path: t.TempDir() paths, OCI layout directories and
// archives there work as arguments.
type Tool struct {
	name string
	args []string // before the caller's
	s    *sandbox
}

// Podman5 returns podman 5.4 from the trixie root: Trixie.StartPodman.
func Podman5(t testing.TB) *Tool {
	t.Helper()
	return Trixie.StartPodman(t)
}

// Skopeo118 returns skopeo 1.18 from the trixie root: Trixie.StartSkopeo.
func Skopeo118(t testing.TB) *Tool {
	t.Helper()
	return Trixie.StartSkopeo(t)
}

// StartPodman returns the root's podman with storage of its own (removed at cleanup), the
// cgroupfs cgroup manager and file events. Run it with `--network none` and `--pull=never`.
// The roots configure no unqualified-search-registries: podman 5 names a short name it
// loads from a docker archive localhost/NAME ("app:1" and "corpus/app:1" become
// "localhost/app:1" and "localhost/corpus/app:1"), and only that name finds it.
func (r *Root) StartPodman(t testing.TB) *Tool {
	t.Helper()
	s := startSandbox(t, r, "podman", sleeper)
	return &Tool{name: "podman", s: s, args: []string{
		"--root", filepath.Join(s.Dir, "storage"), "--runroot", "/run/containers/storage",
		"--tmpdir", "/run/libpod", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
	}}
}

// StartSkopeo returns the root's skopeo.
func (r *Root) StartSkopeo(t testing.TB) *Tool {
	t.Helper()
	return &Tool{name: "skopeo", s: startSandbox(t, r, "skopeo", sleeper)}
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
// SSHDOptions.SetEnv), programs that run "podman" run this podman with its storage.
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

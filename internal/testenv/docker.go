package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Docker is a throwaway dockerd.
type Docker struct {
	Host   string // "unix:///.../docker.sock"
	Root   string // data root
	Flavor Flavor

	// ContainerdStore says the daemon keeps its images in containerd (the containerd
	// image store) rather than in its own graph driver.
	ContainerdStore bool
	// Containerd is the socket of the containerd the daemon runs its containers in (and,
	// on the containerd image store, keeps its images in), reachable from the host; it is
	// set for the flavors of a root. Namespace is the daemon's containerd namespace ("moby").
	Containerd, Namespace string

	docker string // path of the docker CLI
}

// StartDocker starts a private dockerd without bridge networking or iptables,
// waits until it answers /_ping and registers a cleanup that stops it and
// removes all its state. Several daemons may run at once.
func StartDocker(t testing.TB) *Docker {
	t.Helper()
	dockerd := Require(t, "dockerd")
	d := &Docker{Flavor: Docker2010, docker: Require(t, "docker")}

	// Unix socket paths must stay below ~100 bytes, so no t.TempDir().
	dir := shortDir(t, "ferry-dockerd-")
	sock := filepath.Join(dir, "docker.sock")
	d.Host = "unix://" + sock
	d.Root = filepath.Join(dir, "data")

	p := startProc(t, filepath.Join(dir, "dockerd.log"), withSbin(os.Environ()), dockerd,
		"--data-root", d.Root,
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", d.Host,
		"--bridge=none", "--iptables=false")
	t.Cleanup(func() {
		if !p.exited() {
			d.removeContainers(t) // dockerd would give each one 10s to stop
		}
		p.stop(20 * time.Second)
		killLeftovers(dir, d.Root)
		if err := unmountBelow(dir); err != nil {
			t.Errorf("dockerd cleanup: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("dockerd cleanup: %v", err)
		}
	})

	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
	defer client.CloseIdleConnections()
	p.waitReady(t, "dockerd", 60*time.Second, func() error {
		return httpOK(client, "http://docker/_ping")
	})
	return d
}

// Env returns os.Environ() plus DOCKER_HOST for this daemon, for running other
// programs (e.g. the ferry binary) against it.
func (d *Docker) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_HOST=") && !strings.HasPrefix(kv, "DOCKER_CONTEXT=") {
			env = append(env, kv)
		}
	}
	return append(env, "DOCKER_HOST="+d.Host)
}

// Run runs the docker CLI against this daemon and returns stdout; it fails the
// test with stderr on error.
func (d *Docker) Run(t testing.TB, args ...string) string {
	t.Helper()
	return d.run(t, nil, args...)
}

// RunErr is like Run but returns combined output and the error instead of failing.
func (d *Docker) RunErr(args ...string) (string, error) {
	return printed(args, func() (string, error) {
		cmd := exec.Command(d.docker, args...)
		cmd.Env = d.Env()
		out, err := cmd.CombinedOutput()
		return string(out), err
	})
}

func (d *Docker) run(t testing.TB, extraEnv []string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	out, err := printed(args, func() (string, error) {
		var stdout bytes.Buffer
		stderr.Reset()
		cmd := exec.Command(d.docker, args...)
		cmd.Env = append(d.Env(), extraEnv...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), err
	})
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// removeContainers force-removes all containers, giving up after 20s.
func (d *Docker) removeContainers(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.docker, "-H", d.Host, "ps", "-aq").Output()
	if ids := strings.Fields(string(out)); err == nil && len(ids) > 0 {
		args := append([]string{"-H", d.Host, "rm", "-f"}, ids...)
		if out, err := exec.CommandContext(ctx, d.docker, args...).CombinedOutput(); err != nil {
			t.Logf("dockerd cleanup: docker rm -f: %v\n%s", err, out)
		}
	}
}

// killLeftovers SIGKILLs what a killed dockerd leaves behind: processes whose
// command line mentions dir (containerd, shims) and processes in the cgroup
// of one of its containers.
func killLeftovers(dir, root string) {
	ents, _ := os.ReadDir(filepath.Join(root, "containers"))
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, pdir := range procs {
		cmdline, _ := os.ReadFile(filepath.Join(pdir, "cmdline"))
		cgroup, _ := os.ReadFile(filepath.Join(pdir, "cgroup"))
		match := bytes.Contains(cmdline, []byte(dir+"/"))
		for _, e := range ents {
			match = match || bytes.Contains(cgroup, []byte(e.Name()))
		}
		if pid, err := strconv.Atoi(filepath.Base(pdir)); err == nil && match && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// imageID returns the ID (sha256:...) of image ref.
func (d *Docker) imageID(t testing.TB, ref string) string {
	t.Helper()
	return strings.TrimSpace(d.Run(t, "image", "inspect", "--format", "{{.Id}}", ref))
}

// BusyboxImage creates image ref from the static busybox binary without any
// pull: /bin/busybox, symlinks sh, cat, ls and echo, plus files (path ->
// content). It returns the image ID.
func (d *Docker) BusyboxImage(t testing.TB, ref string, files map[string]string) string {
	t.Helper()
	bin, err := os.ReadFile(Require(t, "busybox"))
	if err != nil {
		t.Fatalf("BusyboxImage: %v", err)
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tarPath, busyboxTar(bin, files), 0o644); err != nil {
		t.Fatalf("BusyboxImage: %v", err)
	}
	d.Run(t, "import", "--change", `CMD ["/bin/sh"]`, tarPath, ref)
	return d.imageID(t, ref)
}

// busyboxTar returns a rootfs tar with busybox, its applet links and files.
func busyboxTar(busybox []byte, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	var mkdir func(dir string)
	mkdir = func(dir string) {
		if dir == "." || dir == "/" || dirs[dir] {
			return
		}
		mkdir(path.Dir(dir))
		dirs[dir] = true
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: mtime})
	}
	file := func(name string, mode int64, data []byte) {
		mkdir(path.Dir(name))
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime})
		tw.Write(data)
	}

	mkdir("bin")
	file("bin/busybox", 0o755, busybox)
	for _, applet := range []string{"sh", "cat", "ls", "echo"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, ModTime: mtime})
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777, ModTime: mtime})
	dirs["tmp"] = true
	for _, name := range sortedKeys(files) {
		file(strings.TrimPrefix(path.Clean("/"+name), "/"), 0o644, []byte(files[name]))
	}
	tw.Close() // writes to a bytes.Buffer cannot fail
	return buf.Bytes()
}

// DeriveImage builds ref FROM base with one extra layer holding files
// (path -> content) and returns the image ID. It uses the legacy builder
// without network.
func (d *Docker) DeriveImage(t testing.TB, ref, base string, files map[string]string) string {
	t.Helper()
	ctx := t.TempDir()
	root := filepath.Join(ctx, "files")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatalf("DeriveImage: %v", err)
	}
	for _, name := range sortedKeys(files) {
		p := filepath.Join(root, filepath.FromSlash(path.Clean("/"+name)))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("DeriveImage: %v", err)
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatalf("DeriveImage: %v", err)
		}
	}
	dockerfile := fmt.Sprintf("FROM %s\nCOPY files/ /\n", base)
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatalf("DeriveImage: %v", err)
	}
	d.run(t, []string{"DOCKER_BUILDKIT=0"}, "build", "--network", "none", "-q", "-t", ref, ctx)
	return d.imageID(t, ref)
}

// ShareSocket lets any user use the daemon's socket, as the docker group does, while what
// is beside it (docker 26's containerd, under its exec root) stays root's.
func (d *Docker) ShareSocket(t testing.TB) {
	t.Helper()
	sock := strings.TrimPrefix(d.Host, "unix://")
	if err := os.Chmod(filepath.Dir(sock), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
}

// Cat returns the content of path inside a fresh container of image ref.
func (d *Docker) Cat(t testing.TB, ref, path string) string {
	t.Helper()
	return d.Run(t, "run", "--rm", "--pull=never", "--network", "none", ref, "cat", path)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// httpOK returns nil when GET url answers 200.
func httpOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// withSbin makes sure PATH in env contains the sbin directories, where
// dockerd finds containerd and runc.
func withSbin(env []string) []string {
	out := make([]string, 0, len(env)+1)
	pathVal := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVal = v
			continue
		}
		out = append(out, kv)
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"} {
		if !strings.Contains(":"+pathVal+":", ":"+dir+":") {
			pathVal = strings.TrimPrefix(pathVal+":"+dir, ":")
		}
	}
	return append(out, "PATH="+pathVal)
}

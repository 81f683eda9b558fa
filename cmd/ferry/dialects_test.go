package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestForeignBundles loads what docker, skopeo, podman and go-containerregistry write into a
// docker daemon and an OCI layout, and proves the content arrived.
func TestForeignBundles(t *testing.T) {
	src, dst := testenv.StartDocker(t), testenv.StartDocker(t)
	src.BusyboxImage(t, "base:1", nil)
	src.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "foreign\n"})
	dir := t.TempDir()
	daemon := "docker-daemon:app:1"
	skopeo := func(args ...string) {
		run(t, "skopeo", append([]string{"copy", "--quiet", "--src-daemon-host", src.Host}, args...)...)
	}
	podmanRoot := []string{"--root", filepath.Join(dir, "podman"), "--runroot", filepath.Join(dir, "podman-run")}
	podman := func(args ...string) { run(t, "podman", append(podmanRoot, args...)...) }
	t.Cleanup(func() { exec.Command("podman", append(podmanRoot, "system", "reset", "-f")...).Run() }) //nolint:errcheck

	bundles := map[string]func(path string){
		"docker save": func(p string) { src.Run(t, "save", "-o", p, "app:1") },
		"docker save gzip": func(p string) {
			src.Run(t, "save", "-o", p+".plain", "app:1")
			gzipFile(t, p+".plain", p)
		},
		"skopeo docker-archive": func(p string) { skopeo(daemon, "docker-archive:"+p+":app:1") },
		"skopeo oci-archive":    func(p string) { skopeo(daemon, "oci-archive:"+p+":app:1") },
		"podman docker-archive": func(p string) {
			podman("load", "-q", "-i", filepath.Join(dir, "docker save"))
			podman("save", "-q", "--format", "docker-archive", "-o", p, "app:1")
		},
		"podman oci-archive": func(p string) {
			podman("load", "-q", "-i", filepath.Join(dir, "docker save"))
			podman("save", "-q", "--format", "oci-archive", "-o", p, "app:1")
		},
		"zstd": func(p string) {
			src.Run(t, "save", "-o", p+".plain", "app:1")
			run(t, "zstd", "-q", "-f", p+".plain", "-o", p)
		},
	}
	for _, name := range []string{"docker save", "docker save gzip", "skopeo docker-archive", "skopeo oci-archive", "podman docker-archive", "podman oci-archive", "zstd"} {
		t.Run(name, func(t *testing.T) {
			bundle := filepath.Join(dir, name)
			bundles[name](bundle)
			out := mustFerry(t, dockerEnv(dst), "load", "-i", bundle, "-q")
			ref := strings.Fields(strings.TrimPrefix(out, "Loaded image: "))[0]
			if got := dst.Cat(t, ref, "/marker"); got != "foreign\n" {
				t.Fatalf("%s: /marker = %q", ref, got)
			}
			dst.Run(t, "rmi", ref)
			layout := filepath.Join(dir, "layout-"+strings.ReplaceAll(name, " ", "-"))
			mustFerry(t, nil, "load", "-i", bundle, "--to", "oci:"+layout, "-q")
			run(t, "skopeo", "inspect", "--raw", "oci:"+layout)
		})
	}
}

// TestDocker25Layout loads go-containerregistry's docker 25 test bundle (an untagged arm64
// hello-world, so it is copied out of a container rather than run) into a daemon.
func TestDocker25Layout(t *testing.T) {
	d := testenv.StartDocker(t)
	out := mustFerry(t, dockerEnv(d), "load", "-i", ggcrTestdata(t, "hello-world-v25.tar"))
	id := strings.Fields(strings.TrimPrefix(out, "Loaded image: "))[0]
	if id != "sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44" {
		t.Fatalf("loaded %q", out)
	}
	container := strings.TrimSpace(d.Run(t, "create", "--pull=never", id))
	if got := d.Run(t, "cp", container+":/hello", "-"); !strings.Contains(got, "Hello from Docker!") {
		t.Fatal("/hello from the loaded image is not hello-world")
	}
}

// ggcrTestdata returns a file of go-containerregistry's tarball testdata from the module cache.
func ggcrTestdata(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-containerregistry").Output()
	if err != nil {
		t.Fatalf("locating go-containerregistry: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "pkg", "v1", "tarball", "testdata", name)
}

func gzipFile(t *testing.T, from, to string) {
	t.Helper()
	data := run(t, "gzip", "-c", from)
	if err := os.WriteFile(to, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

package testenv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDockerFlavors(t *testing.T) {
	t.Parallel()
	for _, f := range DockerFlavors {
		t.Run(string(f), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			d := StartDockerFlavor(t, f)
			t.Logf("%s ready after %v", f, time.Since(start).Round(time.Millisecond))

			version := strings.TrimSpace(d.Run(t, "version", "--format", "{{.Server.Version}}"))
			want := "20.10."
			if r := rootOf(f); r != nil {
				want = r.Docker + "."
			}
			if !strings.HasPrefix(version, want) {
				t.Errorf("server version %s, want %s*", version, want)
			}
			var info struct {
				Driver       string
				DriverStatus [][2]string
			}
			if err := json.Unmarshal([]byte(d.Run(t, "info", "--format", "{{json .}}")), &info); err != nil {
				t.Fatal(err)
			}
			onContainerd := false
			for _, kv := range info.DriverStatus {
				onContainerd = onContainerd || kv[0] == "driver-type" && kv[1] == "io.containerd.snapshotter.v1"
			}
			t.Logf("%s: server %s, storage %s %v", f, version, info.Driver, info.DriverStatus)
			if onContainerd != d.ContainerdStore {
				t.Errorf("containerd image store %v, want %v (driver %s %v)", onContainerd, d.ContainerdStore, info.Driver, info.DriverStatus)
			}
			if d.Containerd != "" {
				if fi, err := os.Stat(d.Containerd); err != nil || fi.Mode()&os.ModeSocket == 0 {
					t.Errorf("containerd socket %s: %v", d.Containerd, err)
				}
			}

			d.BusyboxImage(t, "ferry-test/base:1", map[string]string{"/etc/hello": "hello base\n"})
			d.DeriveImage(t, "ferry-test/derived:1", "ferry-test/base:1", map[string]string{"/data/b.txt": "layer two\n"})
			if got := d.Cat(t, "ferry-test/derived:1", "/data/b.txt"); got != "layer two\n" {
				t.Errorf("Cat = %q", got)
			}

			tar := filepath.Join(t.TempDir(), "save.tar")
			d.Run(t, "save", "-o", tar, "ferry-test/derived:1")
			d.Run(t, "rmi", "ferry-test/derived:1", "ferry-test/base:1")
			if out, err := d.RunErr("image", "inspect", "ferry-test/derived:1"); err == nil {
				t.Fatalf("image still there after rmi: %s", out)
			}
			d.Run(t, "load", "-i", tar)
			if got := d.Cat(t, "ferry-test/derived:1", "/etc/hello"); got != "hello base\n" {
				t.Errorf("Cat after load = %q", got)
			}
		})
	}
}

// TestRootTools runs each root's containerd, podman and skopeo on a `docker save` of its
// docker, each the version the root pins.
func TestRootTools(t *testing.T) {
	t.Parallel()
	for _, r := range Roots {
		t.Run(r.Name, func(t *testing.T) {
			t.Parallel()
			testRootTools(t, r)
		})
	}
}

func testRootTools(t *testing.T, r *Root) {
	d := StartDockerFlavor(t, r.DockerClassic)
	d.BusyboxImage(t, "ferry-test/tools:1", map[string]string{"/etc/hello": "hello tools\n"})
	tar := filepath.Join(t.TempDir(), "tools.tar")
	d.Run(t, "save", "-o", tar, "ferry-test/tools:1")

	t.Run("containerd", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		c := r.StartContainerd(t)
		t.Logf("containerd ready after %v", time.Since(start).Round(time.Millisecond))
		version := c.Ctr(t, "version")
		t.Logf("%s", strings.TrimSpace(version))
		if !strings.Contains(version, "Version:  "+r.Containerd+".") {
			t.Errorf("not containerd %s", r.Containerd)
		}
		c.Ctr(t, "-n", "k8s.io", "images", "import", tar)
		if out := c.Ctr(t, "-n", "k8s.io", "images", "ls", "-q"); !strings.Contains(out, "docker.io/ferry-test/tools:1") {
			t.Errorf("images ls: %s", out)
		}
		if got := c.Ctr(t, "-n", "k8s.io", "run", "--rm", "docker.io/ferry-test/tools:1", "t1", "cat", "/etc/hello"); got != "hello tools\n" {
			t.Errorf("ctr run: %q", got)
		}
	})

	t.Run("podman", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		p := r.StartPodman(t)
		t.Logf("podman sandbox ready after %v", time.Since(start).Round(time.Millisecond))
		if v := p.Run(t, "version", "--format", "{{.Client.Version}}"); !strings.HasPrefix(v, r.Podman+".") {
			t.Errorf("podman version %s, want %s.*", v, r.Podman)
		}
		p.Run(t, "load", "-i", tar)
		if out := p.Run(t, "images"); !strings.Contains(out, "ferry-test/tools") {
			t.Errorf("podman images: %s", out)
		}
		if got := p.Run(t, "run", "--rm", "--network", "none", "--pull=never", "docker.io/ferry-test/tools:1", "cat", "/etc/hello"); got != "hello tools\n" {
			t.Errorf("podman run: %q", got)
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		s := r.StartSkopeo(t)
		t.Logf("skopeo sandbox ready after %v", time.Since(start).Round(time.Millisecond))
		if v := s.Run(t, "--version"); !strings.Contains(v, "version "+r.Skopeo+".") {
			t.Errorf("skopeo --version: %s, want %s.*", v, r.Skopeo)
		}
		var img struct{ Layers []string }
		if err := json.Unmarshal([]byte(s.Run(t, "inspect", "docker-archive:"+tar)), &img); err != nil || len(img.Layers) != 1 {
			t.Errorf("inspect docker-archive: %+v %v", img, err)
		}
		oci := filepath.Join(t.TempDir(), "oci")
		s.Run(t, "copy", "docker-archive:"+tar, "oci:"+oci+":tools")
		if _, err := os.Stat(filepath.Join(oci, "index.json")); err != nil {
			t.Errorf("no OCI layout on the host: %v", err)
		}
		// and back, into the root's docker
		back := filepath.Join(t.TempDir(), "back.tar")
		s.Run(t, "copy", "oci:"+oci+":tools", "docker-archive:"+back+":ferry-test/tools:2")
		d.Run(t, "load", "-i", back)
		if got := d.Cat(t, "ferry-test/tools:2", "/etc/hello"); got != "hello tools\n" {
			t.Errorf("Cat of the skopeo copy = %q", got)
		}
	})
}

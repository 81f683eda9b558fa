package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestInteroperability proves the table of docs/interoperability.md, one subtest per cell:
// what docker 20.10 and 26 (both image stores), skopeo 1.9 and 1.18, podman 4 and 5 and
// go-containerregistry write, ferry loads into docker 20.10 and 26 and an OCI layout; and
// what ferry saves, each of them (and containerd 1.7's ctr) loads. Each cell runs the image,
// or reads it back and compares its config digest with the image ID.
func TestInteroperability(t *testing.T) {
	const ref, marker = "interop/app:1", "interop\n"
	src := testenv.StartDocker(t)
	src.BusyboxImage(t, "interop/base:1", nil)
	id := src.DeriveImage(t, ref, "interop/base:1", map[string]string{"marker": marker})
	dir := t.TempDir()
	saved := filepath.Join(dir, "docker-save-20.10.tar")
	src.Run(t, "save", "-o", saved, ref)

	d26 := testenv.StartDockerFlavor(t, testenv.Docker26Classic)
	d26c := testenv.StartDockerFlavor(t, testenv.Docker26Containerd)
	pm5, sk118 := testenv.Podman5(t), testenv.Skopeo118(t)
	p4, err := os.MkdirTemp("", "p4-") // podman 4 takes a runroot of 50 characters at most
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(p4) })
	podman4 := []string{"--root", filepath.Join(p4, "root"), "--runroot", filepath.Join(p4, "run"), "--storage-driver", "vfs"}
	t.Cleanup(func() { run(t, "podman", append(podman4, "system", "reset", "-f")...) })

	// Producers: each writes an archive of ref.
	fromDocker := func(d *testenv.Docker) func(string) {
		return func(p string) {
			d.Run(t, "load", "-i", saved)
			d.Run(t, "save", "-o", p, ref)
		}
	}
	producers := []struct {
		name  string
		write func(path string)
		oci   bool // an OCI archive: skopeo's conversion writes an OCI config of its own
	}{
		{"docker save 20.10", func(p string) { src.Run(t, "save", "-o", p, ref) }, false},
		{"docker save 26 classic", fromDocker(d26), false},
		{"docker save 26 containerd store", fromDocker(d26c), false},
		{"skopeo 1.9 docker-archive", func(p string) { run(t, "skopeo", "copy", "-q", "docker-archive:"+saved, "docker-archive:"+p+":"+ref) }, false},
		{"skopeo 1.9 oci-archive", func(p string) { run(t, "skopeo", "copy", "-q", "docker-archive:"+saved, "oci-archive:"+p+":"+ref) }, true},
		{"skopeo 1.18 docker-archive", func(p string) { sk118.Run(t, "copy", "-q", "docker-archive:"+saved, "docker-archive:"+p+":"+ref) }, false},
		{"skopeo 1.18 oci-archive", func(p string) { sk118.Run(t, "copy", "-q", "docker-archive:"+saved, "oci-archive:"+p+":"+ref) }, true},
		{"podman 4 save", func(p string) {
			run(t, "podman", append(podman4, "load", "-q", "-i", saved)...)
			run(t, "podman", append(podman4, "save", "-q", "-o", p, "localhost/"+ref)...)
		}, false},
		{"podman 5 save", func(p string) {
			pm5.Run(t, "load", "-q", "-i", saved)
			pm5.Run(t, "save", "-q", "-o", p, "localhost/"+ref)
		}, false},
		{"ggcr tarball", func(p string) {
			img, err := tarball.ImageFromPath(saved, nil)
			if err != nil {
				t.Fatal(err)
			}
			tag, _ := name.NewTag(ref)
			if err := tarball.WriteToFile(p, tag, img); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	loadInto := []struct {
		name string
		d    *testenv.Docker
	}{{"docker 20.10", testenv.StartDocker(t)}, {"docker 26 classic", d26}, {"docker 26 containerd store", d26c}, {"oci", nil}}
	for _, p := range producers {
		archive := filepath.Join(dir, strings.ReplaceAll(p.name, " ", "-")+".tar")
		p.write(archive)
		for _, to := range loadInto {
			// podman names what it loads localhost/NAME, and saves it so.
			ref := map[bool]string{true: "localhost/" + ref, false: ref}[strings.HasPrefix(p.name, "podman")]
			t.Run(p.name+" → ferry load → "+to.name, func(t *testing.T) {
				if to.d == nil {
					layout := filepath.Join(dir, "layout-"+filepath.Base(archive))
					mustFerry(t, nil, "load", "-q", "-i", archive, "--to", "oci:"+layout)
					want := id
					if p.oci {
						want = configDigest(t, run(t, "skopeo", "inspect", "--raw", "oci-archive:"+archive))
					}
					idx, _ := os.ReadFile(filepath.Join(layout, "index.json"))
					out, err := exec.Command("skopeo", "inspect", "--raw", "oci:"+layout+":"+ref).Output()
					if err != nil && p.name == "docker save 26 containerd store" {
						// Known: its manifests have docker media types, kept so their digests
						// stay docker's, and skopeo's oci: transport skips such entries.
						// go-containerregistry reads it.
						out, err = ggcrManifest(layout, ref)
					}
					if err != nil {
						t.Fatalf("no %s in the layout: %v\nindex.json: %s", ref, err, idx)
					}
					checkConfigDigest(t, string(out), want)
					return
				}
				to.d.RunErr("rmi", "-f", ref) // loaded by a producer, or the cell before
				mustFerry(t, dockerEnv(to.d), "load", "-q", "-i", archive)
				if got := to.d.Cat(t, ref, "/marker"); got != marker {
					t.Errorf("/marker holds %q", got)
				}
			})
		}
	}

	// Consumers of a bundle ferry saved.
	bundle := filepath.Join(dir, "ferry.tar")
	mustFerry(t, dockerEnv(src), "save", ref, "-o", bundle)
	ctd := testenv.StartContainerd(t)
	consumers := []struct {
		name string
		load func(t *testing.T)
	}{
		{"docker load 20.10", nil}, {"docker load 26 classic", nil}, {"docker load 26 containerd store", nil},
		{"podman 4 load", func(t *testing.T) {
			run(t, "podman", append(podman4, "load", "-q", "-i", bundle)...)
			got := strings.TrimSpace(run(t, "podman", append(podman4, "image", "inspect", "--format", "{{.Id}}", ref)...))
			if "sha256:"+got != id {
				t.Errorf("podman 4 holds %s as %s, want %s", ref, got, id)
			}
		}},
		{"podman 5 load", func(t *testing.T) {
			pm5.Run(t, "load", "-q", "-i", bundle)
			if got := pm5.Run(t, "run", "--rm", "--network", "none", "--pull=never", "localhost/"+ref, "cat", "/marker"); !strings.HasSuffix(got, marker) {
				t.Errorf("podman 5 run: %q", got)
			}
		}},
		{"skopeo 1.9 copy", func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "oci")
			run(t, "skopeo", "copy", "-q", "docker-archive:"+bundle, "oci:"+out+":x")
			checkConfigDigest(t, run(t, "skopeo", "inspect", "--raw", "docker-archive:"+bundle), id)
			// The copy converts the config to OCI's media type: same layers, another digest.
		}},
		{"skopeo 1.18 copy", func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "oci")
			sk118.Run(t, "copy", "-q", "docker-archive:"+bundle, "oci:"+out+":x")
			checkConfigDigest(t, sk118.Run(t, "inspect", "--raw", "docker-archive:"+bundle), id)
			// The copy converts the config to OCI's media type: same layers, another digest.
		}},
		{"ctr import (containerd 1.7)", func(t *testing.T) {
			ctd.Ctr(t, "-n", "default", "images", "import", bundle)
			if got := ctd.Ctr(t, "-n", "default", "run", "--rm", "docker.io/"+ref, "interop", "cat", "/marker"); got != marker {
				t.Errorf("ctr run: %q", got)
			}
		}},
	}
	docker := map[string]*testenv.Docker{"docker load 20.10": loadInto[0].d, "docker load 26 classic": d26, "docker load 26 containerd store": d26c}
	for _, c := range consumers {
		t.Run("ferry save → "+c.name, func(t *testing.T) {
			if d := docker[c.name]; d != nil {
				d.RunErr("rmi", "-f", ref)
				d.Run(t, "load", "-q", "-i", bundle)
				if got := d.Cat(t, ref, "/marker"); got != marker {
					t.Errorf("/marker holds %q", got)
				}
				return
			}
			c.load(t)
		})
	}
}

func checkConfigDigest(t *testing.T, manifest, id string) {
	t.Helper()
	if got := configDigest(t, manifest); got != id {
		t.Errorf("config %s, want %s", got, id)
	}
}

func configDigest(t *testing.T, manifest string) string {
	t.Helper()
	var m struct{ Config struct{ Digest string } }
	if err := json.Unmarshal([]byte(manifest), &m); err != nil {
		t.Fatal(err)
	}
	return m.Config.Digest
}

// ggcrManifest reads the manifest named ref in an OCI layout with go-containerregistry.
func ggcrManifest(dir, ref string) ([]byte, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == ref {
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			return img.RawManifest()
		}
	}
	return nil, fmt.Errorf("no entry named %s", ref)
}

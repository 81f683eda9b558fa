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
// what docker 20.10, 26 and 28 (each on both image stores), skopeo 1.9, 1.18 and 1.22,
// podman 4, 5.4 and 5.8 and go-containerregistry write, ferry loads into each of those
// dockers and an OCI layout; and what ferry saves, each of them (and containerd 1.7's and
// 2.1's ctr) loads. Each cell runs the image, or reads it back and compares its config
// digest with the image ID. The loads into each store run beside those into the others.
func TestInteroperability(t *testing.T) {
	const ref, marker = interopRef, interopMarker
	src := testenv.StartDocker(t)
	src.BusyboxImage(t, "interop/base:1", nil)
	id := src.DeriveImage(t, ref, "interop/base:1", map[string]string{"marker": marker})
	dir := t.TempDir()
	saved := filepath.Join(dir, "docker-save-20.10.tar")
	src.Run(t, "save", "-o", saved, ref)

	p4, err := os.MkdirTemp("", "p4-") // podman 4 takes a runroot of 50 characters at most
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(p4) })
	podman4 := []string{"--root", filepath.Join(p4, "root"), "--runroot", filepath.Join(p4, "run"), "--storage-driver", "vfs"}
	t.Cleanup(func() { run(t, "podman", append(podman4, "system", "reset", "-f")...) })

	// Producers: each writes an archive of ref.
	type producer struct {
		name  string
		write func(path string)
		oci   bool // an OCI archive: skopeo's conversion writes an OCI config of its own
	}
	fromDocker := func(d *testenv.Docker) func(string) {
		return func(p string) {
			d.Run(t, "load", "-i", saved)
			d.Run(t, "save", "-o", p, ref)
		}
	}
	producers := []producer{
		{"docker save 20.10", func(p string) { src.Run(t, "save", "-o", p, ref) }, false},
		{"skopeo 1.9 docker-archive", func(p string) { run(t, "skopeo", "copy", "-q", "docker-archive:"+saved, "docker-archive:"+p+":"+ref) }, false},
		{"skopeo 1.9 oci-archive", func(p string) { run(t, "skopeo", "copy", "-q", "docker-archive:"+saved, "oci-archive:"+p+":"+ref) }, true},
		{"podman 4 save", func(p string) {
			run(t, "podman", append(podman4, "load", "-q", "-i", saved)...)
			run(t, "podman", append(podman4, "save", "-q", "-o", p, "localhost/"+ref)...)
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
	type store struct {
		name string
		d    *testenv.Docker
	}
	loadInto := []store{{"docker 20.10", testenv.StartDocker(t)}}
	// Consumers of a bundle ferry saved, besides the dockers of loadInto.
	type consumer struct {
		name string
		load func(t *testing.T, bundle string)
	}
	var consumers []consumer
	// The toolchain of each root: docker on both image stores, skopeo, podman, containerd.
	for _, r := range testenv.Roots {
		docker, _, _ := strings.Cut(r.Docker, ".")
		classic, onContainerd := testenv.StartDockerFlavor(t, r.DockerClassic), testenv.StartDockerFlavor(t, r.DockerContainerd)
		skopeo, podman, ctd := r.StartSkopeo(t), r.StartPodman(t), r.StartContainerd(t)
		loadInto = append(loadInto, store{"docker " + docker + " classic", classic}, store{"docker " + docker + " containerd store", onContainerd})
		producers = append(producers,
			producer{"docker save " + docker + " classic", fromDocker(classic), false},
			producer{"docker save " + docker + " containerd store", fromDocker(onContainerd), false},
			producer{"skopeo " + r.Skopeo + " docker-archive", func(p string) { skopeo.Run(t, "copy", "-q", "docker-archive:"+saved, "docker-archive:"+p+":"+ref) }, false},
			producer{"skopeo " + r.Skopeo + " oci-archive", func(p string) { skopeo.Run(t, "copy", "-q", "docker-archive:"+saved, "oci-archive:"+p+":"+ref) }, true},
			producer{"podman " + r.Podman + " save", func(p string) {
				podman.Run(t, "load", "-q", "-i", saved)
				podman.Run(t, "save", "-q", "-o", p, "localhost/"+ref)
			}, false})
		consumers = append(consumers,
			consumer{"podman " + r.Podman + " load", func(t *testing.T, bundle string) {
				podman.Run(t, "load", "-q", "-i", bundle)
				if got := podman.Run(t, "run", "--rm", "--network", "none", "--pull=never", "localhost/"+ref, "cat", "/marker"); !strings.HasSuffix(got, marker) {
					t.Errorf("podman %s run: %q", r.Podman, got)
				}
			}},
			consumer{"skopeo " + r.Skopeo + " copy", func(t *testing.T, bundle string) {
				out := filepath.Join(t.TempDir(), "oci")
				skopeo.Run(t, "copy", "-q", "docker-archive:"+bundle, "oci:"+out+":x")
				checkConfigDigest(t, skopeo.Run(t, "inspect", "--raw", "docker-archive:"+bundle), id)
				// The copy converts the config to OCI's media type: same layers, another digest.
			}},
			consumer{"ctr import (containerd " + r.Containerd + ")", func(t *testing.T, bundle string) {
				ctd.Ctr(t, "-n", "default", "images", "import", bundle)
				if got := ctd.Ctr(t, "-n", "default", "run", "--rm", "docker.io/"+ref, "interop", "cat", "/marker"); got != marker {
					t.Errorf("ctr run: %q", got)
				}
			}})
	}
	loadInto = append(loadInto, store{"oci", nil})

	archives := map[string]string{} // producer → the archive it wrote
	for _, p := range producers {
		archives[p.name] = filepath.Join(dir, strings.ReplaceAll(p.name, " ", "-")+".tar")
		p.write(archives[p.name])
	}

	// Consumers of a bundle ferry saved.
	bundle := filepath.Join(dir, "ferry.tar")
	mustFerry(t, dockerEnv(src), "save", ref, "-o", bundle)
	for _, to := range loadInto[:len(loadInto)-1] {
		t.Run("ferry save → docker load "+strings.TrimPrefix(to.name, "docker "), func(t *testing.T) {
			to.d.RunErr("rmi", "-f", ref)
			to.d.Run(t, "load", "-q", "-i", bundle)
			if got := to.d.Cat(t, ref, "/marker"); got != marker {
				t.Errorf("/marker holds %q", got)
			}
		})
	}
	consumers = append(consumers,
		consumer{"podman 4 load", func(t *testing.T, bundle string) {
			run(t, "podman", append(podman4, "load", "-q", "-i", bundle)...)
			got := strings.TrimSpace(run(t, "podman", append(podman4, "image", "inspect", "--format", "{{.Id}}", ref)...))
			if "sha256:"+got != id {
				t.Errorf("podman 4 holds %s as %s, want %s", ref, got, id)
			}
		}},
		consumer{"skopeo 1.9 copy", func(t *testing.T, bundle string) {
			out := filepath.Join(t.TempDir(), "oci")
			run(t, "skopeo", "copy", "-q", "docker-archive:"+bundle, "oci:"+out+":x")
			checkConfigDigest(t, run(t, "skopeo", "inspect", "--raw", "docker-archive:"+bundle), id)
		}})
	for _, c := range consumers {
		t.Run("ferry save → "+c.name, func(t *testing.T) { c.load(t, bundle) })
	}

	// ferry loads each archive into each store; the stores one beside the other.
	for _, to := range loadInto {
		t.Run("ferry load → "+to.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range producers {
				t.Run(p.name, func(t *testing.T) { loadCell(t, p.name, archives[p.name], p.oci, to.d, id) })
			}
		})
	}
}

// The image of TestInteroperability, and what its /marker holds.
const interopRef, interopMarker = "interop/app:1", "interop\n"

// loadCell loads archive, written by producer, into d (nil: an OCI layout) with ferry, and
// checks the image: it runs, or its config digest is id (skopeo's, for an OCI archive).
func loadCell(t *testing.T, producer, archive string, oci bool, d *testenv.Docker, id string) {
	// podman names what it loads localhost/NAME, and saves it so.
	ref := interopRef
	if strings.HasPrefix(producer, "podman") {
		ref = "localhost/" + ref
	}
	if d != nil {
		d.RunErr("rmi", "-f", ref) // loaded by a producer, or the cell before
		mustFerry(t, dockerEnv(d), "load", "-q", "-i", archive)
		if got := d.Cat(t, ref, "/marker"); got != interopMarker {
			t.Errorf("/marker holds %q", got)
		}
		return
	}
	layout := filepath.Join(t.TempDir(), "layout")
	mustFerry(t, nil, "load", "-q", "-i", archive, "--to", "oci:"+layout)
	want := id
	if oci {
		want = configDigest(t, run(t, "skopeo", "inspect", "--raw", "oci-archive:"+archive))
	}
	idx, _ := os.ReadFile(filepath.Join(layout, "index.json"))
	out, err := exec.Command("skopeo", "inspect", "--raw", "oci:"+layout+":"+ref).Output()
	if err != nil && strings.HasSuffix(producer, "containerd store") {
		// Known: its manifests have docker media types, kept so their digests stay
		// docker's, and skopeo's oci: transport skips such entries. go-containerregistry
		// reads it.
		out, err = ggcrManifest(layout, ref)
	}
	if err != nil {
		t.Fatalf("no %s in the layout: %v\nindex.json: %s", ref, err, idx)
	}
	checkConfigDigest(t, string(out), want)
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

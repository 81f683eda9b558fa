package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestRegistry pushes a bundle into a registry on 127.0.0.1, saves images back from it with
// their digests intact, and loads them into docker.
func TestRegistry(t *testing.T) {
	reg := testenv.StartRegistry(t)
	src, dst := testenv.StartDocker(t), testenv.StartDocker(t)
	src.BusyboxImage(t, "base:1", nil)
	src.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "registry\n"})
	dir := t.TempDir()
	bundle := filepath.Join(dir, "app.tar")
	mustFerry(t, dockerEnv(src), "save", "app:1", "-o", bundle, "-q")

	t.Run("load into registry", func(t *testing.T) {
		out := mustFerry(t, nil, "load", "-i", bundle, "--to", "registry:"+reg.Addr+"/mirror", "-q")
		if !strings.Contains(out, reg.Addr+"/mirror/app:1") {
			t.Fatalf("load printed %q", out)
		}
		ref := reg.Addr + "/mirror/app:1"
		// docker saves layers uncompressed; the registry gets them gzip-compressed, as docker
		// push puts them, for its pullers to move a third of the bytes.
		var m v1.Manifest
		json.Unmarshal([]byte(run(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)), &m) //nolint:errcheck
		for i, l := range m.Layers {
			if !strings.HasSuffix(string(l.MediaType), "gzip") {
				t.Errorf("layer %d pushed as %s, want gzip", i, l.MediaType)
			}
		}
		dst.Run(t, "pull", "-q", ref)
		if got := dst.Cat(t, ref, "/marker"); got != "registry\n" {
			t.Fatalf("pulled back: /marker = %q", got)
		}
	})
	t.Run("delta against the registry's inventory", func(t *testing.T) {
		// Across a gap: the inventory of the registry inside it, the delta of app:2 on the
		// connected side (its base left out, uncompressed), loaded into the registry, which
		// holds that base compressed; the nodes pull app:2 whole.
		src.DeriveImage(t, "app:2", "app:1", map[string]string{"marker": "registry 2\n"})
		have := filepath.Join(dir, "mirror-have.json")
		mustFerry(t, nil, "inventory", "--from", "registry:"+reg.Addr+"/mirror", "-o", have)
		delta := filepath.Join(dir, "app2-delta.tar")
		mustFerry(t, dockerEnv(src), "save", "app:2", "--have", have, "-o", delta, "-q")
		if s := summary(t, delta); s.MissingLayers != len(s.Images[0].Layers)-1 {
			t.Fatalf("the delta should leave out every layer but app:2's own: %+v", s.Images[0].Layers)
		}
		mustFerry(t, nil, "load", "-i", delta, "--to", "registry:"+reg.Addr+"/mirror", "-q")
		ref := reg.Addr + "/mirror/app:2"
		dst.Run(t, "pull", "-q", ref)
		if got := dst.Cat(t, ref, "/marker"); got != "registry 2\n" {
			t.Fatalf("pulled back: /marker = %q", got)
		}
	})
	t.Run("save from registry keeps digests", func(t *testing.T) {
		// skopeo pushes gzip-compressed layers: the registry's own blobs.
		ref := reg.Addr + "/sk/app:1"
		run(t, "skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--src-daemon-host", src.Host, "docker-daemon:app:1", "docker://"+ref)
		var inspect struct{ Digest string }
		json.Unmarshal([]byte(run(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+ref)), &inspect) //nolint:errcheck
		saved := filepath.Join(dir, "from-registry.tar.gz")
		mustFerry(t, nil, "save", "--from", "registry", ref, "-o", saved, "-q")
		s := summary(t, saved)
		if len(s.Images) != 1 || s.Images[0].Manifest != inspect.Digest {
			t.Fatalf("bundle manifest %v, registry digest %s", s.Images, inspect.Digest)
		}
		if !strings.HasSuffix(s.Images[0].Layers[0].MediaType, "gzip") {
			t.Errorf("layer media type %s: want the registry's compressed blob", s.Images[0].Layers[0].MediaType)
		}
		dst.Run(t, "load", "-i", saved)
		if got := dst.Cat(t, ref, "/marker"); got != "registry\n" {
			t.Fatalf("/marker = %q", got)
		}
	})
	t.Run("inventory of a registry repository", func(t *testing.T) {
		have := filepath.Join(dir, "have.json")
		mustFerry(t, nil, "inventory", "--from", "registry:"+reg.Addr+"/sk/app", "-o", have)
		delta := filepath.Join(dir, "delta.tar")
		mustFerry(t, nil, "save", "--from", "registry", reg.Addr+"/sk/app:1", "--have", have, "-o", delta, "-q")
		if s := summary(t, delta); s.MissingLayers != len(s.Images[0].Layers) {
			t.Fatalf("the registry holds every layer, the delta should carry none: %+v", s.Images[0].Layers)
		}
	})
	t.Run("multi-platform index", func(t *testing.T) {
		ref := pushIndex(t, reg.Addr+"/multi:1")
		all := filepath.Join(dir, "all.tar")
		mustFerry(t, nil, "save", "--from", "registry", "--all-platforms", ref.String(), "-o", all, "-q")
		s := summary(t, all)
		if len(s.Images) != 1 || s.Images[0].Platform != "linux/amd64" {
			t.Fatalf("want the host's image in manifest.json: %+v", s.Images)
		}
		raw := run(t, "skopeo", "inspect", "--raw", "oci-archive:"+all+":1")
		var idx v1.IndexManifest
		if err := json.Unmarshal([]byte(raw), &idx); err != nil || len(idx.Manifests) != 2 {
			t.Fatalf("want the whole index in the OCI part, got %s", raw)
		}
		arm := filepath.Join(dir, "arm.tar")
		mustFerry(t, nil, "save", "--from", "registry", "--platform", "linux/arm64", ref.String(), "-o", arm, "-q")
		if s := summary(t, arm); s.Images[0].Platform != "linux/arm64" {
			t.Fatalf("--platform linux/arm64 saved %s", s.Images[0].Platform)
		}
	})
}

// pushIndex pushes a two-platform index of random images to ref.
func pushIndex(t *testing.T, ref string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, twoPlatforms(t)); err != nil {
		t.Fatal(err)
	}
	return tag
}

// twoPlatforms is an index of two random images, for linux/amd64 and linux/arm64.
func twoPlatforms(t *testing.T) v1.ImageIndex {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(1024, 1)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := img.ConfigFile()
		cfg.OS, cfg.Architecture = "linux", arch
		img, err = mutate.ConfigFile(img, cfg)
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json"), adds...)
}

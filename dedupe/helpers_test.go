package dedupe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// testImages are random images sharing a base layer: base alone, and three apps on it.
type testImages struct {
	base             v1.Image
	app1, app2, app3 v1.Image
}

// newTestImages makes a 64 KiB base layer and a 4 KiB layer on top of it for each app, so
// sharing the base shows in the sizes.
func newTestImages(t testing.TB) testImages {
	base, apps := testenv.RandomImages(t, 64<<10, 4<<10, 3)
	return testImages{base: base, app1: apps[0], app2: apps[1], app3: apps[2]}
}

// tagged pairs a tag with an image, in the order a bundle lists them.
type tagged struct {
	tag string
	img v1.Image
}

// newBundle adds the images to a bundle in memory.
func newBundle(t testing.TB, imgs ...tagged) (*archive.Bundle, archive.V1Source) {
	t.Helper()
	b, src := &archive.Bundle{}, archive.V1Source{}
	for _, ti := range imgs {
		var tags []string
		if ti.tag != "" {
			tags = []string{ti.tag}
		}
		if _, err := b.AddImage(ti.img, tags, src); err != nil {
			t.Fatal(err)
		}
	}
	return b, src
}

// writeTar writes a bundle as a tar in memory.
func writeTar(t testing.TB, b *archive.Bundle, src archive.BlobSource) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := archive.Write(context.Background(), &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bundleTar writes the images as one bundle.
func bundleTar(t testing.TB, imgs ...tagged) []byte {
	t.Helper()
	b, src := newBundle(t, imgs...)
	return writeTar(t, b, src)
}

// readInto reads a bundle tar into a sink, as `ferry pool add FILE` does.
func readInto(sink archive.Sink, data []byte) (*archive.Bundle, error) {
	return archive.Read(context.Background(), bytes.NewReader(data), sink, archive.ReadOptions{})
}

func mustHash(t testing.TB, f func() (v1.Hash, error)) v1.Hash {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// layerDigests returns the digests of an image's layers as stored.
func layerDigests(t testing.TB, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// layerSize returns the size of an image's layer i as stored.
func layerSize(t testing.TB, img v1.Image, i int) int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers[i].Size
}

// diffIDs returns the diffIDs of an image's layers.
func diffIDs(t testing.TB, img v1.Image) []v1.Hash {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.RootFS.DiffIDs
}

// snapshot maps every file under dir to a digest of its content, and every directory to "dir":
// two snapshots are equal when nothing under dir changed.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameSnapshot fails the test when two snapshots differ, naming the paths that do.
func sameSnapshot(t testing.TB, before, after map[string]string) {
	t.Helper()
	var diff []string
	for p, v := range before {
		if after[p] != v {
			diff = append(diff, p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			diff = append(diff, p)
		}
	}
	slices.Sort(diff)
	if len(diff) > 0 {
		t.Fatalf("changed: %v", diff)
	}
}

// blobFiles lists the hex digests in dir/blobs/sha256.
func blobFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// readImage reads every blob of an image and checks it against its digest and size.
func readImage(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	if got := sha256.Sum256(raw); hex.EncodeToString(got[:]) != m.Config.Digest.Hex {
		return fmt.Errorf("config hashes to %x, manifest says %s", got, m.Config.Digest)
	}
	for _, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", d.Digest, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != d.Digest.Hex || n != d.Size {
			return fmt.Errorf("layer %s: %d bytes hashing to sha256:%s", d.Digest, n, got)
		}
	}
	return nil
}

package dedupe

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
)

// tarLayer is an uncompressed layer of one file: half random, half zeros, so it compresses
// to about half.
func tarLayer(t testing.TB, name string, size int) v1.Layer {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data[:size/2])
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), Format: tar.FormatUSTAR})
	tw.Write(data)
	tw.Close()
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// uncompressedImages are a base and an app on it whose layers are uncompressed tars, as
// docker saves them.
func uncompressedImages(t testing.TB) (base, app v1.Image) {
	t.Helper()
	var err error
	base, err = mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), tarLayer(t, "base", 256<<10))
	if err == nil {
		app, err = mutate.AppendLayers(base, tarLayer(t, "app", 64<<10))
	}
	if err != nil {
		t.Fatal(err)
	}
	return base, app
}

// TestPoolCompresses adds bundles of uncompressed layers: the pool stores them compressed,
// lists images that go-containerregistry validates (digests and diffIDs), and exports the
// bundles byte for byte.
func TestPoolCompresses(t *testing.T) {
	base, app := uncompressedImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[string][]byte{
		"base": bundleTar(t, tagged{"example.com/base:1", base}),
		"app":  bundleTar(t, tagged{"example.com/app:1", app}),
	}
	addTar(t, p, "base", bundles["base"])
	a := addTar(t, p, "app", bundles["app"])
	if len(a.Record.Layers) != 2 || len(a.Record.Manifests) != 1 {
		t.Fatalf("record of app: %d compressed layers, %d manifests; want 2, 1", len(a.Record.Layers), len(a.Record.Manifests))
	}
	for _, d := range layerDigests(t, app) {
		if p.HasBlob(d) {
			t.Errorf("layer %s is stored uncompressed", d)
		}
	}
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Compression(); c > 0.6 || c < 0.3 {
		t.Errorf("stored %d of %d unique bytes: compression %.2f, want about half", s.Stored, s.Unique, c)
	}
	checkExposed(t, p, map[string]v1.Image{"base/example.com/base:1": base, "app/example.com/app:1": app})
	checkExports(t, p, bundles)
	checkClean(t, p, true)

	// A delta against the pool leaves out the layers it holds compressed.
	inv, err := p.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	b, err := readInto(archive.Discard, bundles["app"])
	if err != nil {
		t.Fatal(err)
	}
	if img := b.Images[0]; !inv.Has(img, 0) || !inv.Has(img, 1) {
		t.Error("the pool's inventory lacks the layers it holds compressed")
	}
}

// checkExposed checks that the pool's index.json lists each image under its name with the
// same image ID, its layers compressed, each blob hashing to its digest and decompressing to
// its diffID, as go-containerregistry reads them.
func checkExposed(t *testing.T, p *Pool, want map[string]v1.Image) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(p.Dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	for _, d := range m.Manifests {
		name := d.Annotations["org.opencontainers.image.ref.name"]
		orig, ok := want[name]
		if !ok {
			continue
		}
		delete(want, name)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := mustHash(t, img.ConfigName), mustHash(t, orig.ConfigName); got != want {
			t.Errorf("%s: image ID %s, want %s", name, got, want)
		}
		layers, _ := img.Layers()
		for i, l := range layers {
			if mt, _ := l.MediaType(); mt != types.OCILayer {
				t.Errorf("%s: layer media type %s", name, mt)
			}
			if got, want := readHash(t, l.Compressed), mustHash(t, l.Digest); got != want {
				t.Errorf("%s layer %d: blob hashes to %s, want %s", name, i, got, want)
			}
			if got, want := readHash(t, l.Uncompressed), diffIDs(t, orig)[i]; got != want {
				t.Errorf("%s layer %d: decompresses to %s, want diffID %s", name, i, got, want)
			}
		}
	}
	for name := range want {
		t.Errorf("index.json does not list %s", name)
	}
}

// checkExports checks that each bundle exports as the bytes that were added.
func checkExports(t *testing.T, p *Pool, bundles map[string][]byte) {
	t.Helper()
	for name, data := range bundles {
		b, src, err := p.Export([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		if got := writeTar(t, b, src); !bytes.Equal(got, data) {
			t.Errorf("export of %s: %d bytes, not the %d that were added", name, len(got), len(data))
		}
	}
}

// TestPoolCheckPacked: a compressed layer that is a valid blob but decompresses to other bytes
// than the layer it stands for is caught by check --read-data, and export refuses it.
func TestPoolCheckPacked(t *testing.T) {
	base, _ := uncompressedImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	a := addTar(t, p, "base", bundleTar(t, tagged{"example.com/base:1", base}))
	var layer string
	for layer = range a.Record.Layers {
	}
	// Store other content under the compressed blob's name, then name it by its digest in the record.
	other, err := pack(filepath.Join(t.TempDir(), "other"), strings.NewReader(strings.Repeat("x", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	os.Rename(other.path, p.BlobPath(sha256Hex(other.Digest)))
	a.Record.Layers[layer] = other.Stored
	if err := p.writeRecord(a.Record); err != nil {
		t.Fatal(err)
	}
	p.writeIndex()
	problems, err := p.Check(context.Background(), true)
	if err != nil || len(problems) != 1 || !strings.Contains(problems[0].What, "decompresses to") {
		t.Fatalf("check: %v %v, want one problem: decompresses to other bytes", problems, err)
	}
	b, src, err := p.Export([]string{"base"})
	if err == nil {
		err = archive.Write(context.Background(), &bytes.Buffer{}, b, src, archive.WriteOptions{})
	}
	if err == nil {
		t.Error("exported a damaged layer")
	}
}

// TestPoolRecompress turns a pool that holds uncompressed layers (as ferry stored them before
// pools compressed) into one that holds them compressed, with the same exports.
func TestPoolRecompress(t *testing.T) {
	base, app := uncompressedImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[string][]byte{
		"base": bundleTar(t, tagged{"example.com/base:1", base}),
		"app":  bundleTar(t, tagged{"example.com/app:1", app}),
	}
	for name, data := range bundles {
		addTar(t, p, name, data)
	}
	Uncompress(t, p)
	checkClean(t, p, true)
	checkExports(t, p, bundles)
	for _, d := range layerDigests(t, app) {
		if !p.HasBlob(d) {
			t.Fatalf("layer %s is not stored uncompressed", d)
		}
	}

	from, to, err := p.Recompress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if from != layerSize(t, app, 0)+layerSize(t, app, 1) || to > from*6/10 {
		t.Errorf("compressed %d bytes to %d; want the two layers' %d bytes to about half", from, to, layerSize(t, app, 0)+layerSize(t, app, 1))
	}
	for _, d := range layerDigests(t, app) {
		if p.HasBlob(d) {
			t.Errorf("layer %s is still stored uncompressed", d)
		}
	}
	checkClean(t, p, true)
	checkExports(t, p, bundles)
	checkExposed(t, p, map[string]v1.Image{"base/example.com/base:1": base, "app/example.com/app:1": app})
	if from, _, err := p.Recompress(context.Background()); err != nil || from != 0 {
		t.Errorf("again: compressed %d bytes, %v; want nothing to do", from, err)
	}
}

// Uncompress makes p a pool as ferry made them before pools compressed: layers stored as
// they came, records without Layers and Manifests.
func Uncompress(t testing.TB, p *Pool) {
	t.Helper()
	records, err := p.Records()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		for d, s := range r.Layers {
			rc, err := p.openRaw(s.Digest)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := os.Create(p.BlobPath(sha256Hex(d)))
			f.ReadFrom(rc)
			f.Close()
			rc.Close()
		}
		r.Layers, r.Manifests = nil, nil
		if err := p.writeRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.writeIndex(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.GC(false); err != nil {
		t.Fatal(err)
	}
}

// readHash returns the digest of what open gives.
func readHash(t testing.TB, open func() (io.ReadCloser, error)) v1.Hash {
	t.Helper()
	rc, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	return archive.HashOf(h)
}

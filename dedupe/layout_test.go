package dedupe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
)

// stageInto starts a stage whose commit adds the bundle's entries to index.json, the way the
// oci: store does.
func stageInto(t testing.TB, l *Layout) *Stage {
	t.Helper()
	s, err := l.Stage(func(b *archive.Bundle) error { return l.AddToIndex(b.Index.Manifests) })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadLayout stores a bundle tar in the layout at dir.
func loadLayout(t testing.TB, dir string, data []byte) *Stage {
	t.Helper()
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := stageInto(t, l)
	if _, err := readInto(s, data); err != nil {
		t.Fatal(err)
	}
	return s
}

// layouts are the places a failed stage must leave as it found them.
var layouts = []struct {
	name string
	// make returns the layout directory, given a bundle to hold if it is to exist.
	make func(t *testing.T, holds []byte) string
}{
	{"new directory", func(t *testing.T, _ []byte) string {
		return filepath.Join(t.TempDir(), "layout")
	}},
	{"existing layout", func(t *testing.T, holds []byte) string {
		dir := filepath.Join(t.TempDir(), "layout")
		loadLayout(t, dir, holds)
		return dir
	}},
}

// TestStageAbort checks that a bundle that fails to read leaves the layout as it was: a new
// directory absent, an existing layout unchanged, no stage directory behind.
func TestStageAbort(t *testing.T) {
	ti := newTestImages(t)
	held := bundleTar(t, tagged{"example.com/base:1", ti.base})
	good := bundleTar(t, tagged{"example.com/app:1", ti.app1})

	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-2048] ^= 0xff // inside the last blob, a layer: its digest no longer matches
	failures := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated", good[:len(good)/2], archive.ErrTruncated},
		{"corrupt layer", corrupt, archive.ErrDigestMismatch},
		{"not a bundle", []byte("hello"), archive.ErrNotBundle},
	}
	for _, where := range layouts {
		for _, f := range failures {
			t.Run(where.name+"/"+f.name, func(t *testing.T) {
				dir := where.make(t, held)
				before := snapshot(t, filepath.Dir(dir))
				l, err := OpenLayout(dir)
				if err != nil {
					t.Fatal(err)
				}
				_, err = readInto(stageInto(t, l), f.data)
				if !errors.Is(err, f.want) {
					t.Fatalf("read: %v, want %v", err, f.want)
				}
				sameSnapshot(t, before, snapshot(t, filepath.Dir(dir)))
			})
		}
	}

	t.Run("abort after entries", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		l, err := OpenLayout(dir)
		if err != nil {
			t.Fatal(err)
		}
		s := stageInto(t, l)
		if err := s.Entry(context.Background(), archive.Entry{Name: "blobs/sha256/x", Size: 5}, strings.NewReader("hello")); err != nil {
			t.Fatal(err)
		}
		s.Abort(errors.New("cancelled"))
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("the layout directory the stage made is still there: %v", err)
		}
	})
}

// TestCommitMissingBlob checks that a thin bundle whose left-out blob the layout lacks is
// refused at Commit with nothing stored, and accepted once the blob is there.
func TestCommitMissingBlob(t *testing.T) {
	ti := newTestImages(t)
	other := bundleTar(t, tagged{"example.com/other:1", newTestImages(t).app1})
	base := NewInventory(StoreOCI)
	if err := base.AddV1Image(ti.base); err != nil {
		t.Fatal(err)
	}
	full, src := newBundle(t, tagged{"example.com/app:1", ti.app1})
	thin := base.Thin(full)
	thinTar := writeTar(t, thin, src)

	feeds := []struct {
		name string
		add  func(*Stage) error
	}{
		{"read", func(s *Stage) error { _, err := readInto(s, thinTar); return err }},
		{"feed", func(s *Stage) error { return archive.Feed(context.Background(), thin, src, s) }},
	}
	for _, where := range layouts {
		for _, f := range feeds {
			t.Run(where.name+"/"+f.name, func(t *testing.T) {
				dir := where.make(t, other)
				before := snapshot(t, filepath.Dir(dir))
				l, err := OpenLayout(dir)
				if err != nil {
					t.Fatal(err)
				}
				err = f.add(stageInto(t, l))
				if !errors.Is(err, archive.ErrMissingBlob) {
					t.Fatalf("commit: %v, want %v", err, archive.ErrMissingBlob)
				}
				sameSnapshot(t, before, snapshot(t, filepath.Dir(dir)))

				// With the base there, the same delta goes in.
				loadLayout(t, dir, bundleTar(t, tagged{"example.com/base:1", ti.base}))
				if err := f.add(stageInto(t, l)); err != nil {
					t.Fatal(err)
				}
				idx, err := l.Index()
				if err != nil {
					t.Fatal(err)
				}
				if !hasEntry(idx, "example.com/app:1", full.Images[0].Manifest.Digest) {
					t.Errorf("index.json lacks the app: %+v", idx.Manifests)
				}
				for _, blob := range full.Blobs() {
					if !l.HasBlob(blob.Digest) {
						t.Errorf("blob %s is not in the layout", blob.Digest)
					}
				}
			})
		}
	}
}

// hasEntry reports whether an index lists digest under tag.
func hasEntry(idx v1.IndexManifest, tag string, digest v1.Hash) bool {
	for _, d := range idx.Manifests {
		if archive.RefTag(d.Annotations) == tag && d.Digest == digest {
			return true
		}
	}
	return false
}

// TestStageCounts checks Stored and Skipped: bytes of blobs the layout took in and already had.
func TestStageCounts(t *testing.T) {
	ti := newTestImages(t)
	size := func(imgs ...tagged) (meta, layers map[v1.Hash]int64) {
		b, _ := newBundle(t, imgs...)
		meta, layers = map[v1.Hash]int64{}, map[v1.Hash]int64{}
		for _, img := range b.Images {
			meta[img.Config.Digest], meta[img.Manifest.Digest] = img.Config.Size, img.Manifest.Size
			for _, l := range img.Layers {
				layers[l.Digest] = l.Size
			}
		}
		return meta, layers
	}
	sum := func(sets ...map[v1.Hash]int64) (n int64) {
		for _, set := range sets {
			for _, size := range set {
				n += size
			}
		}
		return n
	}
	app1Meta, app1Layers := size(tagged{"example.com/app:1", ti.app1})
	app2Meta, _ := size(tagged{"example.com/app:2", ti.app2})
	app3Meta, _ := size(tagged{"example.com/app:3", ti.app3})
	baseSize := layerSize(t, ti.base, 0)
	top := func(img v1.Image) int64 { return layerSize(t, img, 1) }
	haveBase := NewInventory(StoreOCI)
	if err := haveBase.AddV1Image(ti.base); err != nil {
		t.Fatal(err)
	}
	app3, app3Src := newBundle(t, tagged{"example.com/app:3", ti.app3})

	dir := t.TempDir()
	steps := []struct {
		name                  string
		data                  []byte
		wantStored, wantSkipd int64
	}{
		{"first bundle", bundleTar(t, tagged{"example.com/app:1", ti.app1}), sum(app1Meta, app1Layers), 0},
		{"sharing the base", bundleTar(t, tagged{"example.com/app:2", ti.app2}), sum(app2Meta) + top(ti.app2), baseSize},
		{"again under another tag", bundleTar(t, tagged{"example.com/again:1", ti.app1}), 0, sum(app1Meta, app1Layers)},
		{"thin", writeTar(t, haveBase.Thin(app3), app3Src), sum(app3Meta) + top(ti.app3), 0},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			s := loadLayout(t, dir, step.data)
			if s.Stored != step.wantStored || s.Skipped != step.wantSkipd {
				t.Errorf("stored %d, skipped %d; want %d, %d", s.Stored, s.Skipped, step.wantStored, step.wantSkipd)
			}
		})
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, stagePrefix+"*")); len(entries) > 0 {
		t.Errorf("stages left behind: %v", entries)
	}
}

func TestAddToIndex(t *testing.T) {
	desc := func(digest string, ann ...string) v1.Descriptor {
		d := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: 1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(digest, 64)}}
		if len(ann) > 0 {
			d.Annotations = map[string]string{}
			for i := 0; i+1 < len(ann); i += 2 {
				d.Annotations[ann[i]] = ann[i+1]
			}
		}
		return d
	}
	const image, ref = "io.containerd.image.name", "org.opencontainers.image.ref.name"
	tests := []struct {
		name        string
		have, added []v1.Descriptor
		want        []string // digests in index.json, in order
	}{
		{"into an empty index", nil, []v1.Descriptor{desc("a", image, "docker.io/library/x:1")}, []string{"a"}},
		{"a tag moves", []v1.Descriptor{desc("a", image, "docker.io/library/x:1"), desc("b", image, "docker.io/library/y:1")},
			[]v1.Descriptor{desc("c", image, "docker.io/library/x:1")}, []string{"b", "c"}},
		{"other tags of the same image stay", []v1.Descriptor{desc("a", image, "docker.io/library/x:1")},
			[]v1.Descriptor{desc("a", image, "docker.io/library/x:2")}, []string{"a", "a"}},
		{"by ref name", []v1.Descriptor{desc("a", ref, "x:1")}, []v1.Descriptor{desc("b", ref, "x:1")}, []string{"b"}},
		{"untagged, by digest", []v1.Descriptor{desc("a"), desc("b")}, []v1.Descriptor{desc("a")}, []string{"b", "a"}},
		{"untagged next to tagged", []v1.Descriptor{desc("a", ref, "x:1")}, []v1.Descriptor{desc("a")}, []string{"a", "a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &Layout{Dir: t.TempDir(), FS: LocalFS{}}
			if err := l.AddToIndex(tt.have); err != nil {
				t.Fatal(err)
			}
			if err := l.AddToIndex(tt.added); err != nil {
				t.Fatal(err)
			}
			idx, err := l.Index()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range idx.Manifests {
				got = append(got, d.Digest.Hex[:1])
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("index.json lists %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLayoutInventory checks the inventory of a layout ferry wrote, and that
// go-containerregistry reads the layout.
func TestLayoutInventory(t *testing.T) {
	ti := newTestImages(t)
	dir := filepath.Join(t.TempDir(), "layout")
	loadLayout(t, dir, bundleTar(t, tagged{"example.com/app:1", ti.app1}))
	loadLayout(t, dir, bundleTar(t, tagged{"example.com/app:2", ti.app2}))
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := l.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	// every blob: 3 layers, 2 configs, 2 manifests
	if inv.Store != StoreOCI || len(inv.Blobs) != 7 || len(inv.DiffIDs) != 3 {
		t.Fatalf("inventory %+v: want an oci store with every blob, and the layers of the base and two apps", inv)
	}
	b, _ := newBundle(t, tagged{"example.com/app:1", ti.app1}, tagged{"example.com/app:3", ti.app3})
	var leftOut []v1.Hash
	for _, blob := range inv.Thin(b).Blobs() {
		if blob.Missing {
			leftOut = append(leftOut, blob.Digest)
		}
	}
	if want := layerDigests(t, ti.app1); !sameHashes(leftOut, want) {
		t.Errorf("thinned against the layout, left out %v, want app1's layers %v", leftOut, want)
	}

	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []v1.Image{ti.app1, ti.app2} {
		want := mustHash(t, img.Digest)
		got, err := idx.Image(want)
		if err != nil {
			t.Fatal(err)
		}
		if err := readImage(got); err != nil {
			t.Errorf("image %s: %v", want, err)
		}
	}
}

func TestOpenLayout(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string) error
		ok    bool
	}{
		{"missing", func(dir string) error { return nil }, true},
		{"empty", func(dir string) error { return os.Mkdir(dir, 0o755) }, true},
		{"a layout", func(dir string) error {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
		}, true},
		{"something else", func(dir string) error {
			if err := os.Mkdir(dir, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			_, err := OpenLayout(dir)
			if (err == nil) != tt.ok {
				t.Fatalf("OpenLayout: %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

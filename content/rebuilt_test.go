package content

import (
	"bytes"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestRebuiltChunks: the chunks of a rebuilt layer, known from its recipe and what a cache
// knows of the layers it copies from, are those a scan of the layer finds, records in
// memory or on disk; a layer built on one the cache does not know is not known.
func TestRebuiltChunks(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 2)
	cache := NewCache(t.TempDir())
	x := NewIndex()
	for d, l := range layersOf(t, old...) {
		rc, _ := l.Uncompressed()
		if _, err := cache.Add(t.Context(), x, rc); err != nil {
			t.Fatalf("indexing %s: %v", d, err)
		}
		rc.Close()
	}
	cache.Save(x)
	b, src := bundleOf(t, rebuilt...)
	var delta bytes.Buffer
	if _, err := Make(t.Context(), &delta, b, src, x, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{listAt, 3} {
		defer func(was int) { listAt = was }(listAt)
		listAt = at
		rb, err := Rebuild(t.Context(), bytes.NewReader(delta.Bytes()), layersOf(t, old...), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range b.LayerOrder() {
			got, ok, err := rb.Chunks(l.Digest, cache.Entry)
			if !ok || err != nil || got.Layer.DiffID != l.DiffID || got.Size != l.Size {
				t.Fatalf("records in memory up to %d: layer %s: %v, %v, %+v", at, l.Digest, ok, err, got.Layer)
			}
			rc, err := src.Open(t.Context(), l.Blob)
			if err != nil {
				t.Fatal(err)
			}
			_, want, err := scan(t.Context(), rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if g, w := records(t, got.recs), records(t, want); !slices.Equal(g, w) {
				t.Errorf("records in memory up to %d: layer %s: %d chunk records known, %d scanned, not the same", at, l.Digest, len(g), len(w))
			}
		}
		rb.Close()
	}
	rb, err := Rebuild(t.Context(), bytes.NewReader(delta.Bytes()), layersOf(t, old...), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	unknown := func(v1.Hash) (Chunks, bool) { return Chunks{}, false }
	if _, ok, err := rb.Chunks(b.LayerOrder()[0].Digest, unknown); ok || err != nil {
		t.Errorf("a layer built on layers the cache lacks: known %v, %v", ok, err)
	}
}

// records lists the records of l.
func records(t *testing.T, l *recList) []rec {
	var out []rec
	if err := l.each(func(r rec) { out = append(out, r) }); err != nil {
		t.Fatal(err)
	}
	return out
}

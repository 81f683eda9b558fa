package content

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"testing"
)

// collect gathers what a segmenter receives, in order.
type collect struct{ bytes.Buffer }

func (c *collect) raw(p []byte) error { c.Write(p); return nil }
func (c *collect) chunk(p []byte, sum [32]byte) error {
	c.Write(p)
	return nil
}

func seedTar(files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range files {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(data))
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzSegment: whatever the bytes (a tar, a damaged one, not a tar), segment passes every
// one of them once, in order: a layer is always given back exactly.
func FuzzSegment(f *testing.F) {
	f.Add(seedTar(map[string]string{"a": "hello", "dir/b": string(bytes.Repeat([]byte("x"), 70000))}))
	f.Add([]byte("not a tar"))
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c collect
		if err := segment(bytes.NewReader(data), &c); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.Bytes(), data) {
			t.Fatalf("segments give %d bytes back of %d", c.Len(), len(data))
		}
	})
}

// emptyBase holds no layers.
type emptyBase struct{}

func (emptyBase) Open(_ context.Context, layers []Layer, each func(int, io.Reader) error) (func(), error) {
	for i := range layers {
		if err := each(i, bytes.NewReader(nil)); err != nil {
			return nil, err
		}
	}
	return func() {}, nil
}

// FuzzRebuild: a content delta is input from across the gap: whatever its bytes, Rebuild
// and Inspect end with an error or a bundle, never a panic, in bounded memory.
func FuzzRebuild(f *testing.F) {
	for _, seed := range fuzzDeltas(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if rb, err := Rebuild(t.Context(), bytes.NewReader(data), emptyBase{}, t.TempDir()); err == nil {
			rb.Close()
		}
		Inspect(t.Context(), bytes.NewReader(data), t.TempDir())
	})
}

// FuzzIndexJSON: an inventory's content index is read from across the gap.
func FuzzIndexJSON(f *testing.F) {
	x := NewIndex()
	x.Add(context.Background(), bytes.NewReader(seedTar(map[string]string{"a": "one", "b": "two"})))
	seed, _ := x.MarshalJSON()
	f.Add(seed)
	f.Add([]byte(`{"layers":[{"diffID":"sha256:` + string(bytes.Repeat([]byte("0"), 64)) + `","size":10}],"chunks":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var x Index
		if x.UnmarshalJSON(data) != nil {
			return
		}
		again, err := x.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var y Index
		if err := y.UnmarshalJSON(again); err != nil || y.Chunks() != x.Chunks() {
			t.Fatalf("an index read back does not read again: %v", err)
		}
	})
}

// count returns how many chunk records ch holds.
func count(ch Chunks) int {
	n := 0
	ch.recs.each(func(rec) { n++ })
	return n
}

// FuzzCacheEntry: what a Cache keeps (the user's, or a pool's) is read from disk: an entry
// read is one whose chunks lie within its layer, and Put keeps it as it was read.
func FuzzCacheEntry(f *testing.F) {
	ch, err := Scan(context.Background(), bytes.NewReader(seedTar(map[string]string{"a": "one", "b": string(bytes.Repeat([]byte("two"), 30000))})))
	if err != nil {
		f.Fatal(err)
	}
	c := NewCache(f.TempDir())
	if err := c.Put(ch); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(c.path(ch.DiffID))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(c.path(ch.DiffID), data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, ok := c.Entry(ch.DiffID)
		if !ok {
			return
		}
		got.recs.each(func(r rec) {
			if r.off+int64(r.size) > got.Size {
				t.Fatalf("a chunk at %d+%d of a layer of %d bytes", r.off, r.size, got.Size)
			}
		})
		if err := c.Put(got); err != nil {
			t.Fatal(err)
		}
		again, ok := c.Entry(ch.DiffID)
		if !ok || count(again) != count(got) || again.Layer.Size != got.Size {
			t.Fatalf("an entry kept again does not read back as it was")
		}
	})
}

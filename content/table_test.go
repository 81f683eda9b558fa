package content

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// spillEvery makes tables and record lists hold at most n chunks in memory for the rest of
// the test.
func spillEvery(t *testing.T, n int) {
	was, wasList := spillAt, listAt
	spillAt, listAt = n, n
	t.Cleanup(func() { spillAt, listAt = was, wasList })
}

// pagesOf makes indexes and cache entries write n chunk records a page for the rest of the
// test.
func pagesOf(t *testing.T, n int) {
	was := pageRecs
	pageRecs = n
	t.Cleanup(func() { pageRecs = was })
}

// TestTable: a table that spills to runs finds what a map would, where a map would, and
// lists it in order.
func TestTable(t *testing.T) {
	spillEvery(t, 7)
	better := func(a, b loc) bool { return a.layer < b.layer }
	tb, want := newTable(better), map[[32]byte]loc{}
	rng := rand.New(rand.NewPCG(1, 2))
	sumOf := func(i int) [32]byte { // some at either end of the fan-out
		sum := sha256.Sum256(binary.AppendUvarint(nil, uint64(i)))
		switch i % 10 {
		case 0:
			sum[0], sum[1] = 0xff, 0xff
		case 1:
			sum[0], sum[1] = 0, 0
		}
		return sum
	}
	for range 3000 {
		sum := sumOf(rng.IntN(1000)) // many put again, at a better or a worse place
		l := loc{layer: rng.Uint32N(50), off: rng.Int64N(1 << 40), size: rng.Uint32N(1 << 18)}
		tb.put(sum, l)
		if had, ok := want[sum]; !ok || better(l, had) {
			want[sum] = l
		}
	}
	if len(tb.runs) < 2 || len(tb.runs) > 12 {
		t.Errorf("%d runs on disk, want a few", len(tb.runs))
	}
	for i := range 1100 {
		got, ok := tb.get(sumOf(i))
		if w, has := want[sumOf(i)]; ok != has || got != w {
			t.Fatalf("chunk %d: found %v at %+v, want %v at %+v", i, ok, got, has, w)
		}
	}
	var last []byte
	n := 0
	for sum, l := range tb.all() {
		if bytes.Compare(sum[:], last) <= 0 || want[sum] != l {
			t.Fatalf("chunk %x listed out of order or at %+v, want %+v", sum[:4], l, want[sum])
		}
		last = bytes.Clone(sum[:])
		n++
	}
	if n != len(want) || tb.failed() != nil {
		t.Errorf("listed %d chunks, want %d (%v)", n, len(want), tb.failed())
	}
}

// TestIndexOnDisk: an index whose chunks lie on disk writes the same bytes and makes the same
// delta as one that holds them in memory.
func TestIndexOnDisk(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 2)
	b, src := bundleOf(t, rebuilt...)
	var indexes, deltas [2]bytes.Buffer
	for i := range deltas {
		if i == 1 {
			spillEvery(t, 100)
		}
		x := indexOf(t, old...)
		if i == 1 && len(x.chunks.runs) == 0 {
			t.Fatalf("%d chunks, none on disk", x.Chunks())
		}
		if err := x.WriteJSON(&indexes[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := Make(t.Context(), &deltas[i], b, src, x, t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(indexes[0].Bytes(), indexes[1].Bytes()) {
		t.Errorf("the index on disk writes %d bytes, in memory %d", indexes[1].Len(), indexes[0].Len())
	}
	if !bytes.Equal(deltas[0].Bytes(), deltas[1].Bytes()) {
		t.Errorf("the index on disk makes a delta of %d bytes, in memory %d", deltas[1].Len(), deltas[0].Len())
	}
}

// TestIndexOneString: an index whose chunks are one string, as the ferry before 2026-12-07
// wrote them, reads as the same index as its pages do.
func TestIndexOneString(t *testing.T) {
	spillEvery(t, 50)
	pagesOf(t, 7)
	old, _ := testenv.RebuiltSet(t, 2)
	var paged bytes.Buffer
	if err := indexOf(t, old...).WriteJSON(&paged); err != nil {
		t.Fatal(err)
	}
	var j struct {
		Layers json.RawMessage `json:"layers"`
		Chunks []string        `json:"chunks"`
	}
	if err := json.Unmarshal(paged.Bytes(), &j); err != nil || len(j.Chunks) < 2 {
		t.Fatalf("%d pages: %v", len(j.Chunks), err)
	}
	var all []byte
	for _, p := range j.Chunks {
		b, _ := base64.StdEncoding.DecodeString(p)
		all = append(all, b...)
	}
	one := fmt.Appendf(nil, `{"layers":%s,"chunks":%q}`, j.Layers, base64.StdEncoding.EncodeToString(all))
	for _, form := range [][]byte{one, paged.Bytes()} {
		var x Index
		if err := x.UnmarshalJSON(form); err != nil {
			t.Fatal(err)
		}
		again, err := x.MarshalJSON()
		if err != nil || !bytes.Equal(again, paged.Bytes()) {
			t.Errorf("read back, the index writes %d bytes, not the %d it was (%v)", len(again), paged.Len(), err)
		}
	}
}

// TestCacheOneString: a cache entry whose records are one string, as the ferry before
// 2026-12-07 wrote them, reads as the entry Put writes in pages; both read back in order,
// whether the records lie in memory or on disk.
func TestCacheOneString(t *testing.T) {
	spillEvery(t, 5)
	pagesOf(t, 7)
	old, _ := testenv.RebuiltSet(t, 1)
	layers, err := old[0].Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ch, err := Scan(t.Context(), rc)
	if err != nil {
		t.Fatal(err)
	}
	want := records(t, ch.recs)
	c := NewCache(t.TempDir())
	if err := c.Put(ch); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(c.path(ch.DiffID))
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		Chunks []string `json:"chunks"`
		Sum    string   `json:"sum"`
	}
	if err := json.Unmarshal(data, &e); err != nil || len(e.Chunks) < 2 {
		t.Fatalf("%d pages: %v", len(e.Chunks), err)
	}
	var all []byte
	for _, p := range e.Chunks {
		b, _ := base64.StdEncoding.DecodeString(p)
		all = append(all, b...)
	}
	head, _ := json.Marshal(ch.Layer)
	oneString := fmt.Appendf(head[:len(head)-1], `,"chunks":%q,"sum":%q}`, base64.StdEncoding.EncodeToString(all), e.Sum)
	for _, form := range [][]byte{data, oneString} {
		if err := os.WriteFile(c.path(ch.DiffID), form, 0o644); err != nil {
			t.Fatal(err)
		}
		got, ok := c.Entry(ch.DiffID)
		recs := records(t, got.recs)
		if !ok || got.Layer.DiffID != ch.DiffID || !slices.Equal(recs, want) {
			t.Errorf("an entry read back holds %d records, want the %d put", len(recs), len(want))
		}
	}
}

// flipping serves a layer with one byte changed.
type flipping struct {
	archive.BlobSource
	layer v1.Hash
}

func (f flipping) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	rc, err := f.BlobSource.Open(ctx, b)
	if err != nil || b.Digest != f.layer {
		return rc, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	data[len(data)/2] ^= 1
	return io.NopCloser(bytes.NewReader(data)), err
}

// checked is a source that says it checked what it serves.
type checked struct{ archive.BlobSource }

func (checked) Checked() bool { return true }

// TestCutChecked: a layer is hashed as it is cut, and one that is not what its diffID says
// fails the delta, unless the source checked it as it came (a spool): then it is not hashed
// again.
func TestCutChecked(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 1)
	b, src := bundleOf(t, rebuilt...)
	x := indexOf(t, old...)
	lying := flipping{src, b.LayerOrder()[0].Digest}
	if _, err := Make(t.Context(), io.Discard, b, lying, x, t.TempDir()); !errors.Is(err, archive.ErrDigestMismatch) {
		t.Errorf("a layer not what its diffID says: %v", err)
	}
	if _, err := Make(t.Context(), io.Discard, b, checked{lying}, x, t.TempDir()); err != nil {
		t.Errorf("from a source that checked it: %v", err)
	}
}

// opening counts the blobs it opens.
type opening struct {
	archive.BlobSource
	opens *atomic.Int32
}

func (o opening) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	o.opens.Add(1)
	return o.BlobSource.Open(ctx, b)
}

// TestAhead: the deltas made of layers cut ahead (one for each host, at once, against its
// own index) take the cuts, each layer then read once more, to write its recipe, not twice;
// and each is the delta it would be had Make cut the layers itself. Cuts are let go once the
// Ahead closes.
func TestAhead(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 2)
	b, src := bundleOf(t, rebuilt...)
	layers := b.LayerOrder()
	a := NewAhead(t.Context())
	for _, l := range layers {
		a.Cut(l, src)
	}
	a.Cut(layers[0], src) // once
	var wg sync.WaitGroup
	for _, x := range []*Index{indexOf(t, old...), indexOf(t, old[0]), indexOf(t, old...)} {
		var want bytes.Buffer
		if _, err := Make(t.Context(), &want, b, src, x, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		wg.Go(func() {
			made := opening{BlobSource: src, opens: &atomic.Int32{}}
			var got bytes.Buffer
			if _, err := Make(t.Context(), &got, b, a.Source(made), x, dir); err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Error("a delta of layers cut ahead is not the delta of layers cut by Make")
			}
			if n := made.opens.Load(); n != int32(len(layers)) {
				t.Errorf("Make opened layers %d times, want %d: once each", n, len(layers))
			}
		})
	}
	wg.Wait()
	a.Close()
	a.Cut(layers[1], src) // closed: nothing
	a.Close()
}

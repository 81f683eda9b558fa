package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/testenv"
)

// storedBase serves layers, and recipes and packs by their sha256, decompressed.
type storedBase struct {
	layers
	parts map[v1.Hash][]byte
}

func (b storedBase) Open(ctx context.Context, want []Layer, each func(int, io.Reader) error) (func(), error) {
	for i, l := range want {
		var err error
		if p, ok := b.parts[l.DiffID]; ok {
			var zr io.ReadCloser
			if zr, _, err = compress.NewReader(bytes.NewReader(p)); err == nil {
				err = each(i, zr)
				zr.Close()
			}
		} else {
			_, err = b.layers.Open(ctx, []Layer{l}, func(_ int, r io.Reader) error { return each(i, r) })
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// encode encodes the layers of imgs over x, and returns how to give each back and a base
// holding old's layers and the recipes and packs.
func encode(t *testing.T, x *Index, old []v1.Image, imgs ...v1.Image) ([]Stored, storedBase) {
	base := storedBase{layersOf(t, old...), map[v1.Hash][]byte{}}
	var out []Stored
	for d, l := range layersOf(t, imgs...) {
		rc, _ := l.Uncompressed()
		var recipe, pack bytes.Buffer
		e, err := x.Encode(t.Context(), rc, &recipe, &pack)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		base.parts[e.Recipe.DiffID], base.parts[e.Pack.DiffID] = recipe.Bytes(), pack.Bytes()
		t.Logf("layer %s, %d bytes: recipe %d bytes (%d compressed), pack %d (%d), over %d layers",
			d.Hex[:12], e.Tar.Size, e.Recipe.Size, recipe.Len(), e.Pack.Size, pack.Len(), len(e.Base))
		out = append(out, Stored{Layer: Layer{DiffID: d, Size: e.Tar.Size}, Recipe: e.Recipe, Pack: e.Pack.Layer, Base: e.Base})
	}
	return out, base
}

// TestStored: a layer encoded over an index of the old set's layers costs what it gained, and
// is given back byte for byte from those layers, its recipe and its pack; a base layer not
// what the recipe expects, or a damaged pack, fails the rebuild.
func TestStored(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 1)
	stored, base := encode(t, indexOf(t, old...), old, rebuilt...)
	for _, s := range stored {
		var got bytes.Buffer
		if err := s.Rebuild(t.Context(), &got, base, t.TempDir()); err != nil {
			t.Fatalf("rebuilding %s: %v", s.Layer.DiffID, err)
		}
		if int64(got.Len()) != s.Layer.Size {
			t.Errorf("rebuilt %d bytes, want %d", got.Len(), s.Layer.Size)
		}
		if s.Pack.Size > s.Layer.Size/10 {
			t.Errorf("layer %s of %d bytes packs %d new", s.Layer.DiffID, s.Layer.Size, s.Pack.Size)
		}
	}
	s := stored[0]
	wrong := storedBase{layers{}, base.parts}
	for _, l := range s.Base {
		wrong.layers[l.DiffID] = base.layers[otherThan(base.layers, l.DiffID)]
	}
	damaged := storedBase{base.layers, map[v1.Hash][]byte{}}
	for d, p := range base.parts {
		damaged.parts[d] = p
	}
	pack := bytes.Clone(base.parts[s.Pack.DiffID])
	pack[len(pack)/2] ^= 0x40
	damaged.parts[s.Pack.DiffID] = pack
	for name, c := range map[string]struct {
		base Base
		want error
	}{
		"a base layer not what the recipe expects": {wrong, archive.ErrDiffIDMismatch},
		"a damaged pack": {damaged, archive.ErrCorrupt},
	} {
		err := s.Rebuild(t.Context(), io.Discard, c.base, t.TempDir())
		if !errors.Is(err, c.want) && !errors.Is(err, archive.ErrDigestMismatch) {
			t.Errorf("%s: got %v, want %v", name, err, c.want)
		}
	}
}

// TestEncodeGivesUp: Encode gives up on the recipe of a layer most of which is new, and
// still says where its chunks lie.
func TestEncodeGivesUp(t *testing.T) {
	random := make([]byte, 24<<20)
	rand.Read(random)
	tar := testenv.FilesTar(map[string]string{"random": string(random)})
	x := NewIndex()
	x.Add(t.Context(), bytes.NewReader(testenv.FilesTar(map[string]string{"a": "one"})))
	var pack countWriter
	e, err := x.Encode(t.Context(), bytes.NewReader(tar), io.Discard, &pack)
	if err != nil || !e.GaveUp || count(e.Tar) < len(random)/maxChunk || e.Tar.Size != int64(len(tar)) {
		t.Fatalf("got %v, %+v: want it given up, the tar's chunks recorded", err, e)
	}
	if pack > giveUpAfter+2*maxChunk {
		t.Errorf("packed %d bytes of a layer that is all new", pack)
	}
}

// TestCachePut: what a Cache keeps of an encoded layer and of its pack indexes them again.
func TestCachePut(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 1)
	x := indexOf(t, old...)
	c := NewCache(t.TempDir())
	for d, vl := range layersOf(t, rebuilt...) {
		rc, _ := vl.Uncompressed()
		e, err := x.Encode(t.Context(), rc, io.Discard, io.Discard)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		e.Tar.DiffID = d
		for _, ch := range []Chunks{e.Tar, e.Pack} {
			if err := c.Put(ch); err != nil {
				t.Fatal(err)
			}
			y, distinct := NewIndex(), map[[32]byte]bool{}
			ch.recs.each(func(r rec) { distinct[r.sum] = true })
			if !c.Load(y, ch.DiffID) || y.Chunks() != len(distinct) || len(distinct) == 0 {
				t.Errorf("%s: loaded %d chunks, want %d", ch.DiffID, y.Chunks(), len(distinct))
			}
		}
	}
}

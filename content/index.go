package content

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A Layer is a layer a store holds, by the diffID of its uncompressed tar.
type Layer struct {
	DiffID v1.Hash `json:"diffID"`
	// Size is the uncompressed tar's.
	Size int64 `json:"size"`
	// Refs name images of the store that hold the layer, in the store's own words: where a
	// rebuild reads it from.
	Refs []string `json:"refs,omitempty"`
}

// A loc is where a chunk lies: in which layer of an index, at which offset of its tar.
type loc struct {
	layer uint32
	off   int64
	size  uint32
}

// An Index says which chunks the layers of a store hold, and where.
type Index struct {
	Layers []Layer
	layer  map[v1.Hash]int // diffID → index in Layers
	chunks map[[32]byte]loc
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{layer: map[v1.Hash]int{}, chunks: map[[32]byte]loc{}}
}

// Chunks returns how many distinct chunks x knows.
func (x *Index) Chunks() int { return len(x.chunks) }

// Holds reports whether x holds the layer diffID names.
func (x *Index) Holds(diffID v1.Hash) bool {
	_, ok := x.layer[diffID]
	return ok
}

// Add reads the uncompressed tar of a layer from r to its end, records its chunks, and
// returns its diffID. A layer x holds already is not recorded again. On any error x is as it
// was.
func (x *Index) Add(ctx context.Context, r io.Reader) (v1.Hash, error) {
	l, recs, err := scan(ctx, r)
	if err == nil {
		x.add(l, recs)
	}
	return l.DiffID, err
}

// scan reads a layer's tar and returns it, with where its chunks lie.
func scan(ctx context.Context, r io.Reader) (Layer, []rec, error) {
	s := &indexer{h: sha256.New()}
	if err := segment(archive.ContextReader(ctx, io.TeeReader(r, s.h)), s); err != nil {
		return Layer{}, nil, err
	}
	return Layer{DiffID: archive.HashOf(s.h), Size: s.off}, s.found, nil
}

// add records layer l, whose chunks lie where recs say, unless x holds it.
func (x *Index) add(l Layer, recs []rec) {
	if x.Holds(l.DiffID) {
		x.Name(l.DiffID, l.Refs...)
		return
	}
	i := len(x.Layers)
	x.layer[l.DiffID] = i
	x.Layers = append(x.Layers, l)
	for _, c := range recs {
		// A chunk several layers hold is found in the one of least diffID: the same index
		// whatever order its layers came in.
		if had, ok := x.chunks[c.sum]; !ok || l.DiffID.Hex < x.Layers[had.layer].DiffID.Hex {
			x.chunks[c.sum] = loc{layer: uint32(i), off: c.off, size: c.size}
		}
	}
}

// AddChunks adds a layer (or a pack) whose chunks lie where ch says to x, unless x holds it.
func (x *Index) AddChunks(ch Chunks) { x.add(ch.Layer, ch.recs) }

// Known returns how many bytes of the chunks of ch x knows.
func (x *Index) Known(ch Chunks) int64 {
	var n int64
	for _, r := range ch.recs {
		if l, ok := x.chunks[r.sum]; ok && l.size == r.size {
			n += int64(r.size)
		}
	}
	return n
}

// Name names refs as images that hold the layer diffID names, if x holds it.
func (x *Index) Name(diffID v1.Hash, refs ...string) {
	if i, ok := x.layer[diffID]; ok {
		x.Layers[i].Refs = appendNew(x.Layers[i].Refs, refs...)
	}
}

func appendNew(list []string, add ...string) []string {
	for _, s := range add {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// A rec is where a chunk lies in a layer.
type rec struct {
	sum  [32]byte
	off  int64
	size uint32
}

// An indexer notes where a layer's chunks lie.
type indexer struct {
	h     hash.Hash
	off   int64
	found []rec
}

func (s *indexer) raw(p []byte) error { s.off += int64(len(p)); return nil }

func (s *indexer) chunk(p []byte, sum [32]byte) error {
	s.found = append(s.found, rec{sum, s.off, uint32(len(p))})
	s.off += int64(len(p))
	return nil
}

// appendRec appends a chunk record: its sha256, then as uvarints the layer's place in
// Layers (in an index; none in a cache entry, which is one layer's), the offset, the size.
func appendRec(buf []byte, c rec, layer ...uint32) []byte {
	buf = append(buf, c.sum[:]...)
	for _, l := range layer {
		buf = binary.AppendUvarint(buf, uint64(l))
	}
	return binary.AppendUvarint(binary.AppendUvarint(buf, uint64(c.off)), uint64(c.size))
}

// readRecs reads the records appendRec wrote with (layered) or without a layer number,
// each checked against sizes, the layers' sizes: an index is input from across the gap.
func readRecs(buf []byte, layered bool, sizes []int64, each func(layer uint32, c rec)) error {
	n := 2
	if layered {
		n = 3
	}
	for len(buf) > 0 {
		if len(buf) < 32 {
			return fmt.Errorf("content index: a chunk record is cut short")
		}
		var c rec
		copy(c.sum[:], buf)
		buf = buf[32:]
		var v [3]uint64
		for k := range n {
			var w int
			if v[k], w = binary.Uvarint(buf); w <= 0 {
				return fmt.Errorf("content index: chunk %x: a bad number", c.sum[:8])
			}
			buf = buf[w:]
		}
		if !layered {
			v = [3]uint64{0, v[0], v[1]}
		}
		if v[0] >= uint64(len(sizes)) || v[2] == 0 || v[2] > maxChunk || v[1] > uint64(sizes[v[0]]) || v[1]+v[2] > uint64(sizes[v[0]]) {
			return fmt.Errorf("content index: chunk %x lies outside the layers listed", c.sum[:8])
		}
		c.off, c.size = int64(v[1]), uint32(v[2])
		each(uint32(v[0]), c)
	}
	return nil
}

// indexJSON is an Index as an inventory carries it: the layers, and the chunks as records of
// a sha256, the layer's place in Layers, the offset and the size (uvarints), in base64.
type indexJSON struct {
	Layers []Layer `json:"layers"`
	Chunks string  `json:"chunks"`
}

// MarshalJSON writes x compactly: an index of a store's layers crosses the gap.
// The layers are sorted by diffID, their refs by name, the chunks by sha256: the same index
// gives the same bytes.
func (x *Index) MarshalJSON() ([]byte, error) {
	layers := slices.Clone(x.Layers)
	slices.SortFunc(layers, func(a, b Layer) int { return strings.Compare(a.DiffID.Hex, b.DiffID.Hex) })
	for i := range layers {
		layers[i].Refs = slices.Sorted(slices.Values(layers[i].Refs))
	}
	place := make([]uint32, len(x.Layers)) // x's layer → its place in layers
	for i, l := range layers {
		place[x.layer[l.DiffID]] = uint32(i)
	}
	sums := slices.SortedFunc(maps.Keys(x.chunks), func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	var buf []byte
	for _, sum := range sums {
		l := x.chunks[sum]
		buf = appendRec(buf, rec{sum, l.off, l.size}, place[l.layer])
	}
	return json.Marshal(indexJSON{Layers: layers, Chunks: base64.StdEncoding.EncodeToString(buf)})
}

// UnmarshalJSON reads what MarshalJSON wrote, checking every record against the layers it
// names: an index is input from across the gap.
func (x *Index) UnmarshalJSON(data []byte) error {
	var j indexJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	buf, err := base64.StdEncoding.DecodeString(j.Chunks)
	if err != nil {
		return fmt.Errorf("content index: chunks: %w", err)
	}
	*x = *NewIndex()
	for i, l := range j.Layers {
		if l.DiffID.Algorithm != "sha256" || len(l.DiffID.Hex) != 64 || l.Size < 0 || x.Holds(l.DiffID) {
			return fmt.Errorf("content index: layer %d: no sha256 diffID, a bad size, or listed twice", i)
		}
		x.layer[l.DiffID] = i
	}
	x.Layers = j.Layers
	sizes := make([]int64, len(x.Layers))
	for i, l := range x.Layers {
		sizes[i] = l.Size
	}
	return readRecs(buf, true, sizes, func(layer uint32, c rec) {
		x.chunks[c.sum] = loc{layer: layer, off: c.off, size: c.size}
	})
}

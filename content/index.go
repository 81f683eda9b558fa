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
	s := &indexer{h: sha256.New()}
	if err := segment(archive.ContextReader(ctx, io.TeeReader(r, s.h)), s); err != nil {
		return v1.Hash{}, err
	}
	diffID := archive.HashOf(s.h)
	if x.Holds(diffID) {
		return diffID, nil
	}
	i := len(x.Layers)
	x.layer[diffID] = i
	x.Layers = append(x.Layers, Layer{DiffID: diffID, Size: s.off})
	for _, c := range s.found {
		if _, ok := x.chunks[c.sum]; !ok {
			x.chunks[c.sum] = loc{layer: uint32(i), off: c.off, size: c.size}
		}
	}
	return diffID, nil
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

// An indexer notes where a layer's chunks lie.
type indexer struct {
	h     hash.Hash
	off   int64
	found []struct {
		sum  [32]byte
		off  int64
		size uint32
	}
}

func (s *indexer) raw(p []byte) error { s.off += int64(len(p)); return nil }

func (s *indexer) chunk(p []byte, sum [32]byte) error {
	s.found = append(s.found, struct {
		sum  [32]byte
		off  int64
		size uint32
	}{sum, s.off, uint32(len(p))})
	s.off += int64(len(p))
	return nil
}

// indexJSON is an Index as an inventory carries it: the layers, and the chunks as records of
// a sha256, the layer's place in Layers, the offset and the size (uvarints), in base64.
type indexJSON struct {
	Layers []Layer `json:"layers"`
	Chunks string  `json:"chunks"`
}

// MarshalJSON writes x compactly: an index of a store's layers crosses the gap.
func (x *Index) MarshalJSON() ([]byte, error) {
	sums := slices.SortedFunc(maps.Keys(x.chunks), func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	var buf []byte
	for _, sum := range sums {
		l := x.chunks[sum]
		buf = append(buf, sum[:]...)
		buf = binary.AppendUvarint(buf, uint64(l.layer))
		buf = binary.AppendUvarint(buf, uint64(l.off))
		buf = binary.AppendUvarint(buf, uint64(l.size))
	}
	return json.Marshal(indexJSON{Layers: x.Layers, Chunks: base64.StdEncoding.EncodeToString(buf)})
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
	for len(buf) > 0 {
		if len(buf) < 32 {
			return fmt.Errorf("content index: a chunk record is cut short")
		}
		var sum [32]byte
		copy(sum[:], buf)
		buf = buf[32:]
		var v [3]uint64
		for k := range v {
			n := 0
			if v[k], n = binary.Uvarint(buf); n <= 0 {
				return fmt.Errorf("content index: chunk %x: a bad number", sum[:8])
			}
			buf = buf[n:]
		}
		if v[0] >= uint64(len(x.Layers)) || v[2] == 0 || v[2] > maxChunk || v[1] > uint64(x.Layers[v[0]].Size) || v[1]+v[2] > uint64(x.Layers[v[0]].Size) {
			return fmt.Errorf("content index: chunk %x lies outside the layers listed", sum[:8])
		}
		x.chunks[sum] = loc{layer: uint32(v[0]), off: int64(v[1]), size: uint32(v[2])}
	}
	return nil
}

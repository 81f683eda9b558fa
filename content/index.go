package content

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
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
	off   int64
	layer uint32
	size  uint32
}

// An Index says which chunks the layers of a store hold, and where. Its chunks are in a
// table that keeps all but the last of them on disk: an index of any size takes a few MiB
// of memory.
type Index struct {
	Layers []Layer
	layer  map[v1.Hash]int // diffID → index in Layers
	chunks *table
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	x := &Index{}
	x.init()
	return x
}

// init empties x. A chunk several layers hold is found in the one of least diffID: the same
// index whatever order its layers came in.
func (x *Index) init() {
	x.Layers, x.layer = nil, map[v1.Hash]int{}
	x.chunks = newTable(func(a, b loc) bool { return x.Layers[a.layer].DiffID.Hex < x.Layers[b.layer].DiffID.Hex })
}

// Chunks returns how many chunks x knows: exactly while it holds them in memory, else at most
// that.
func (x *Index) Chunks() int { return x.chunks.len() }

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

// scan reads a layer's tar and returns it, with where its chunks lie. A layer known already
// (its diffID checked as it is read: a rebuilt one) is not hashed again, only its size
// checked.
func scan(ctx context.Context, r io.Reader, known ...Layer) (Layer, *recList, error) {
	s := &indexer{found: &recList{}}
	h := sha256.New()
	if len(known) == 0 {
		r = io.TeeReader(r, h)
	}
	if err := segment(archive.ContextReader(ctx, r), s); err != nil {
		return Layer{}, nil, err
	}
	if len(known) > 0 {
		if s.off != known[0].Size {
			return Layer{}, nil, fmt.Errorf("layer %s: %d bytes of %d", known[0].DiffID, s.off, known[0].Size)
		}
		return known[0], s.found, nil
	}
	return Layer{DiffID: archive.HashOf(h), Size: s.off}, s.found, nil
}

// add records layer l, whose chunks lie where recs say, unless x holds it. Records that
// cannot be read back from disk are left out: x finds fewer chunks, never a wrong one.
func (x *Index) add(l Layer, recs *recList) {
	if x.Holds(l.DiffID) {
		x.Name(l.DiffID, l.Refs...)
		return
	}
	i := len(x.Layers)
	x.layer[l.DiffID] = i
	x.Layers = append(x.Layers, l)
	recs.each(func(c rec) {
		x.chunks.put(c.sum, loc{layer: uint32(i), off: c.off, size: c.size})
	})
}

// AddChunks adds a layer (or a pack) whose chunks lie where ch says to x, unless x holds it.
func (x *Index) AddChunks(ch Chunks) { x.add(ch.Layer, ch.recs) }

// Known returns how many bytes of the chunks of ch x knows.
func (x *Index) Known(ch Chunks) int64 {
	var n int64
	ch.recs.each(func(r rec) {
		if l, ok := x.chunks.get(r.sum); ok && l.size == r.size {
			n += int64(r.size)
		}
	})
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
	off   int64
	found *recList
}

func (s *indexer) raw(p []byte) error { s.off += int64(len(p)); return nil }

func (s *indexer) chunk(p []byte, sum [32]byte) error {
	s.found.add(rec{sum, s.off, uint32(len(p))})
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

// An index crosses the gap as JSON: the layers, then the chunks in pages of pageRecs records
// (appendRec, with the layer's place in the layers), each page in base64, so that a reader
// holds one page at a time. An older ferry wrote the chunks as one string; it reads as one
// page.
var pageRecs = 1024 // a variable for the tests

// WriteJSON writes x as JSON to w, its layers sorted by diffID, their refs by name, the
// chunks by sha256: the same index gives the same bytes.
func (x *Index) WriteJSON(w io.Writer) error {
	layers := slices.Clone(x.Layers)
	slices.SortFunc(layers, func(a, b Layer) int { return strings.Compare(a.DiffID.Hex, b.DiffID.Hex) })
	for i := range layers {
		layers[i].Refs = slices.Sorted(slices.Values(layers[i].Refs))
	}
	place := make([]uint32, len(x.Layers)) // x's layer → its place in layers
	for i, l := range layers {
		place[x.layer[l.DiffID]] = uint32(i)
	}
	list, err := json.Marshal(layers)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	fmt.Fprintf(bw, `{"layers":%s,"chunks":`, list)
	pw := newPageWriter(bw)
	for sum, l := range x.chunks.all() {
		pw.add(rec{sum, l.off, l.size}, place[l.layer])
	}
	pw.end()
	bw.WriteString("}")
	return errors.Join(x.chunks.failed(), bw.Flush())
}

// A pageWriter writes chunk records (appendRec) as a JSON array of pages of pageRecs, each
// in base64, and hashes the records.
type pageWriter struct {
	w        *bufio.Writer
	page     []byte
	n, pages int
	h        hash.Hash
}

func newPageWriter(w *bufio.Writer) *pageWriter {
	w.WriteByte('[')
	return &pageWriter{w: w, h: sha256.New()}
}

func (p *pageWriter) add(r rec, layer ...uint32) {
	p.page = appendRec(p.page, r, layer...)
	if p.n++; p.n == pageRecs {
		p.flush()
	}
}

func (p *pageWriter) flush() {
	if p.pages > 0 {
		p.w.WriteByte(',')
	}
	p.w.WriteByte('"')
	enc := base64.NewEncoder(base64.StdEncoding, p.w)
	enc.Write(p.page)
	enc.Close()
	p.w.WriteByte('"')
	p.h.Write(p.page)
	p.page, p.n = p.page[:0], 0
	p.pages++
}

// end ends the array, and returns the sha256 of the records.
func (p *pageWriter) end() []byte {
	if p.n > 0 {
		p.flush()
	}
	p.w.WriteByte(']')
	return p.h.Sum(nil)
}

// ReadJSON reads into x the index WriteJSON wrote, the next value dec reads, checking every
// record against the layers it names: an index is input from across the gap.
func (x *Index) ReadJSON(dec *json.Decoder) error {
	x.init()
	if err := expect(dec, json.Delim('{')); err != nil {
		return err
	}
	var sizes []int64
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		switch key {
		case "layers":
			if sizes != nil {
				return fmt.Errorf("content index: layers listed twice")
			}
			if sizes, err = x.readLayers(dec); err != nil {
				return err
			}
		case "chunks":
			if sizes == nil {
				return fmt.Errorf("content index: chunks before the layers they lie in")
			}
			if err := x.readChunks(dec, sizes); err != nil {
				return err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
		}
	}
	return expect(dec, json.Delim('}'))
}

// readLayers reads the layers of an index, and returns their sizes.
func (x *Index) readLayers(dec *json.Decoder) ([]int64, error) {
	var layers []Layer
	if err := dec.Decode(&layers); err != nil {
		return nil, fmt.Errorf("content index: layers: %w", err)
	}
	sizes := make([]int64, len(layers))
	for i, l := range layers {
		if l.DiffID.Algorithm != "sha256" || len(l.DiffID.Hex) != 64 || l.Size < 0 || x.Holds(l.DiffID) {
			return nil, fmt.Errorf("content index: layer %d: no sha256 diffID, a bad size, or listed twice", i)
		}
		x.layer[l.DiffID] = i
		sizes[i] = l.Size
	}
	x.Layers = layers
	return sizes, nil
}

// readChunks reads the chunks of an index, each record checked against the layers' sizes.
func (x *Index) readChunks(dec *json.Decoder, sizes []int64) error {
	return readPages(dec, func(buf []byte) error {
		return readRecs(buf, true, sizes, func(layer uint32, c rec) {
			x.chunks.put(c.sum, loc{layer: layer, off: c.off, size: c.size})
		})
	})
}

// readPages reads what a pageWriter wrote, or the one string an older ferry wrote, handing
// f each page's records.
func readPages(dec *json.Decoder, f func([]byte) error) error {
	page := func(tok json.Token) error {
		s, ok := tok.(string)
		if !ok {
			return fmt.Errorf("content index: chunks: %v where a page was due", tok)
		}
		buf, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return fmt.Errorf("content index: chunks: %w", err)
		}
		return f(buf)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('[') {
		return page(tok)
	}
	for dec.More() {
		if tok, err = dec.Token(); err != nil {
			return err
		}
		if err := page(tok); err != nil {
			return err
		}
	}
	return expect(dec, json.Delim(']'))
}

// expect reads the next token of dec, which must be want.
func expect(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err == nil && tok != want {
		err = fmt.Errorf("content index: %v where %v was due", tok, want)
	}
	return err
}

// MarshalJSON writes x as WriteJSON does.
func (x *Index) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	err := x.WriteJSON(&buf)
	return buf.Bytes(), err
}

// UnmarshalJSON reads x as ReadJSON does.
func (x *Index) UnmarshalJSON(data []byte) error {
	return x.ReadJSON(json.NewDecoder(bytes.NewReader(data)))
}

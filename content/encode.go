package content

import (
	"bufio"
	"context"
	"crypto/sha256"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrytool/ferry/archive"
)

// An encoder cuts layers into recipes over the content an Index knows, and a pack of the
// chunks it does not, each new chunk packed once.
type encoder struct {
	x      *Index
	used   map[uint32]uint32 // x's layer → its number in base
	base   []Layer           // the layers of x the recipes copy from
	rw     recipeWriter
	pack   *bufio.Writer
	packed *table // chunk → its offset in the pack
	size   int64  // the pack's bytes

	read int64 // bytes of the layer being read
	// keep, when set, records where the layer's chunks lie in it, and the pack's in the pack
	// (what a Cache keeps of each); and the encoder gives up on a layer that is mostly new:
	// past giveUpAfter, once more than half of what it read is new, it only records.
	keep       bool
	gaveUp     bool
	recs, pRec recList
}

func newEncoder(x *Index, recipes, pack io.Writer) *encoder {
	return &encoder{x: x, used: map[uint32]uint32{}, packed: newTable(func(a, b loc) bool { return false }),
		rw: recipeWriter{w: bufio.NewWriterSize(recipes, 1<<20)}, pack: bufio.NewWriterSize(pack, 1<<20)}
}

// giveUpAfter is how far Encode reads before it judges whether a layer is mostly new.
const giveUpAfter = 16 << 20

func (e *encoder) raw(p []byte) error {
	e.read += int64(len(p))
	if e.gaveUp {
		return nil
	}
	return e.rw.addRaw(p)
}

func (e *encoder) chunk(p []byte, sum [32]byte) error {
	if e.keep {
		e.recs.add(rec{sum, e.read, uint32(len(p))})
	}
	e.read += int64(len(p))
	if e.gaveUp {
		return nil
	}
	if l, ok := e.x.chunks.get(sum); ok && int(l.size) == len(p) {
		return e.rw.copy(op{kind: opBase, layer: e.baseLayer(l.layer), off: l.off, n: int64(len(p))})
	}
	at, ok := e.packed.get(sum)
	off := at.off
	if !ok {
		off = e.size
		if _, err := e.pack.Write(p); err != nil {
			return err
		}
		if e.keep {
			e.pRec.add(rec{sum, off, uint32(len(p))})
		}
		e.packed.put(sum, loc{off: off})
		e.size += int64(len(p))
		if e.keep && e.read > giveUpAfter && 2*e.size > e.read {
			e.gaveUp = true
			return nil
		}
	}
	return e.rw.copy(op{kind: opPack, off: off, n: int64(len(p))})
}

// baseLayer returns the recipes' number for x's layer i, listing it on first use.
func (e *encoder) baseLayer(i uint32) uint32 {
	if d, ok := e.used[i]; ok {
		return d
	}
	d := uint32(len(e.base))
	e.used[i] = d
	e.base = append(e.base, e.x.Layers[i])
	return d
}

// flush writes out what the encoder buffers.
func (e *encoder) flush() error {
	if err := e.rw.w.Flush(); err != nil {
		return err
	}
	return e.pack.Flush()
}

// Chunks are a layer (or a pack) and where its chunks lie in it: what a Cache keeps of it.
type Chunks struct {
	Layer
	recs *recList
}

// An Encoded layer is a layer as a recipe over the content of an Index and a pack of the
// chunks the index lacks (Stored says how to give it back).
type Encoded struct {
	// Tar is the layer read (its size: Encode leaves its diffID to the caller, who hashes
	// the layer anyway), and where its chunks lie in it.
	Tar Chunks
	// Pack is the pack: the sha256 and size of its bytes, and where its chunks lie in it.
	Pack Chunks
	// Base are the layers of the index the recipe copies from, in the recipe's numbering.
	Base []Layer
	// Recipe is the sha256 and size of the recipe.
	Recipe Layer
	// GaveUp: most of the layer was new, or the index empty; the recipe and the pack were
	// left unfinished (Tar alone holds).
	GaveUp bool
}

// Encode reads the uncompressed tar of a layer from r to its end and writes it as a recipe
// over the content x knows, to recipe, and the chunks x lacks, each once, to pack, both
// zstd-compressed. Past the first 16 MiB, once more than half of what it read is new, it
// gives up on the recipe and the pack, and only records where the layer's chunks lie.
func (x *Index) Encode(ctx context.Context, r io.Reader, recipe, pack io.Writer) (*Encoded, error) {
	rz, err := newZstd(recipe)
	if err != nil {
		return nil, err
	}
	defer rz.Close()
	pz, err := newZstd(pack)
	if err != nil {
		return nil, err
	}
	defer pz.Close()
	rh, ph := sha256.New(), sha256.New()
	e := newEncoder(x, io.MultiWriter(rz, rh), io.MultiWriter(pz, ph))
	e.keep, e.gaveUp = true, x.Chunks() == 0
	if err := segment(archive.ContextReader(ctx, r), e); err != nil {
		return nil, err
	}
	// The records are copied out: pointing into e would keep it, its buffers and the zstd
	// encoders its writers hold, as long as the Chunks.
	recs, pRecs := e.recs, e.pRec
	tar := Chunks{Layer{Size: e.read}, &recs}
	if e.gaveUp {
		return &Encoded{Tar: tar, GaveUp: true}, nil
	}
	if err := e.rw.end(); err != nil {
		return nil, err
	}
	for _, err := range []error{e.flush(), rz.Close(), pz.Close()} {
		if err != nil {
			return nil, err
		}
	}
	return &Encoded{
		Tar:    tar,
		Pack:   Chunks{Layer{DiffID: archive.HashOf(ph), Size: e.size}, &pRecs},
		Base:   e.base,
		Recipe: Layer{DiffID: archive.HashOf(rh), Size: e.rw.n},
	}, nil
}

// newZstd compresses recipes and packs: small windows, one goroutine, so that several at
// once stay within a few MiB.
func newZstd(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
}

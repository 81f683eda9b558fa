package content

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A Base opens the uncompressed tars of layers a store holds.
type Base interface {
	// Open calls each with the tar of each of layers, by its place in layers, in any order,
	// and for several layers at once if it likes. A layer it cannot find is an error that
	// names it. A reader that is also an io.ReaderAt over the whole tar (a file of the store)
	// must stay readable until release is called: the layer is then read in place, and not
	// copied.
	Open(ctx context.Context, layers []Layer, each func(i int, r io.Reader) error) (release func(), err error)
}

// A Rebuilt bundle is a content delta made whole: every layer the delta gives is present in
// Bundle, served by Src from a temporary directory that Close removes.
type Rebuilt struct {
	Bundle  *archive.Bundle
	Src     archive.BlobSource
	Summary Summary
	d       *delta

	mu   sync.Mutex
	base map[uint32]*recList // the chunk records of base layers, as Chunks found them; nil: none
	kept int                 // records of base layers read, in memory unless past keptRecs
}

// Close removes what the rebuild staged.
func (r *Rebuilt) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.base {
		l.close()
	}
	r.d.close()
	return nil
}

// Rebuild reads a content delta from r, and from the layers base opens the runs its recipes
// copy, each of those layers checked against its diffID, staging them under tempDir (""
// for the system's). A layer base lacks, or whose content is not what the delta expects,
// fails it. The bundle's layers are rebuilt as Src is read, each failing at its end unless
// it hashes to its diffID: a sink that commits only a bundle read whole (archive.Feed's)
// never takes a wrong one.
func Rebuild(ctx context.Context, r io.Reader, base Base, tempDir string) (*Rebuilt, error) {
	d, err := readDelta(ctx, r, tempDir)
	if err != nil {
		return nil, err
	}
	if err := d.readBase(ctx, base); err != nil {
		d.close()
		return nil, err
	}
	if d.base, err = os.Open(filepath.Join(d.dir, "base")); err != nil {
		d.close()
		return nil, err
	}
	src := source{d: d, layers: map[v1.Hash]deltaLayer{}}
	for _, l := range d.h.Layers {
		src.layers[l.Digest] = l
	}
	full := d.thin.Supply(func(b *archive.Blob) bool { _, ok := src.layers[b.Digest]; return ok })
	return &Rebuilt{Bundle: full, Src: src, Summary: d.summary(), d: d}, nil
}

// summary says what the delta holds.
func (d *delta) summary() Summary {
	s := Summary{Layers: len(d.h.Layers), New: d.h.Pack, Base: len(d.h.Base)}
	for _, l := range d.h.Layers {
		switch {
		case l.Whole:
			s.Whole++
			s.Blobs += l.Size
		case l.Held:
			s.Held++
			s.Rebuilt++
		default:
			s.Rebuilt++
		}
	}
	return s
}

// readBase copies the runs of the base layers the recipes use into the base file, reading
// each layer only as far as its last run, unless the store gives it to read in place; base
// may read several layers at once, each run's place in the file being set before. Nothing
// here checks the layers: a layer rebuilt from a run that is not what the delta expects fails
// its own diffID.
func (d *delta) readBase(ctx context.Context, base Base) error {
	f, err := os.Create(filepath.Join(d.dir, "base"))
	if err != nil {
		return err
	}
	defer f.Close()
	var at int64
	var used []Layer
	var index []int
	for i, l := range d.h.Base {
		if len(d.ranges[i]) == 0 {
			continue
		}
		used, index = append(used, l), append(index, i)
		for k, s := range d.ranges[i] {
			d.ranges[i][k].at = at
			at += s.end - s.start
		}
	}
	d.inPlace = make([]io.ReaderAt, len(d.h.Base))
	d.release, err = base.Open(ctx, used, func(u int, r io.Reader) error {
		i := index[u]
		if ra, ok := r.(io.ReaderAt); ok {
			d.inPlace[i] = ra
			return nil
		}
		cr := &countReader{r: r}
		for _, s := range d.ranges[i] {
			_, err := io.CopyN(io.Discard, cr, s.start-cr.n)
			if err == nil {
				_, err = io.CopyN(io.NewOffsetWriter(f, s.at), cr, s.end-s.start)
			}
			if err == io.EOF {
				err = fmt.Errorf("%w: it ends at %d bytes of the %d the delta expects", archive.ErrDiffIDMismatch, cr.n, d.h.Base[i].Size)
			}
			if err != nil {
				return fmt.Errorf("the store's layer %s: %w", d.h.Base[i].DiffID, err)
			}
		}
		return nil
	})
	return err
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// A source serves a delta's layers: those it carries whole from their files, the others
// rebuilt from their recipes as they are read.
type source struct {
	d      *delta
	layers map[v1.Hash]deltaLayer
}

// Checked reports that s checks what it serves: a layer carried whole was checked as it came,
// and a rebuilt one fails at its end unless it hashes to its diffID.
func (s source) Checked() bool { return true }

func (s source) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	l, ok := s.layers[b.Digest]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %s is not a layer of the content delta", archive.ErrMissingBlob, b.Digest)
	case l.Whole:
		return os.Open(filepath.Join(s.d.dir, l.Digest.Hex))
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 1<<20)
		err := s.d.rebuild(l, bw)
		if err == nil {
			err = bw.Flush()
		} else {
			err = fmt.Errorf("rebuilding layer %s: %w", l.Digest, err)
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// rebuild writes layer l from its recipe to w, and fails at its end unless it hashes to its
// diffID.
func (d *delta) rebuild(l deltaLayer, w io.Writer) error {
	h := sha256.New()
	w = io.MultiWriter(w, h)
	err := d.walk(l, func(o op, raw io.Reader) error {
		var src io.Reader = raw
		switch o.kind {
		case opPack:
			src = io.NewSectionReader(d.pack, o.off, o.n)
		case opBase:
			if ra := d.inPlace[o.layer]; ra != nil {
				src = io.NewSectionReader(ra, o.off, o.n)
				break
			}
			spans := d.ranges[o.layer]
			k := sort.Search(len(spans), func(k int) bool { return spans[k].end > o.off })
			src = io.NewSectionReader(d.base, spans[k].at+o.off-spans[k].start, o.n)
		}
		if n, err := io.CopyN(w, src, o.n); err != nil {
			if o.kind == opBase && err == io.EOF {
				err = fmt.Errorf("%w: the store's layer %s ends before the delta expects", archive.ErrDiffIDMismatch, d.h.Base[o.layer].DiffID)
			}
			return fmt.Errorf("copying %d of %d bytes: %w", n, o.n, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got := archive.HashOf(h); got != l.DiffID {
		return fmt.Errorf("%w: it hashes to %s", archive.ErrDiffIDMismatch, got)
	}
	return nil
}

// Chunks returns where the chunks of a layer the delta rebuilds lie in it, as Scan finds
// them, without reading the layer: a recipe copies whole chunks, so those it copies from a
// base layer are that layer's chunks there, as entry gives them (a Cache's Entry), and
// those it copies from the pack are cut from it again. ok is false for a layer the delta
// carries whole, or one that copies from a layer entry does not give. What it returns is a
// hint, as entry's are: a wrong record gives a later delta whose layers fail their diffIDs.
func (r *Rebuilt) Chunks(digest v1.Hash, entry func(v1.Hash) (Chunks, bool)) (ch Chunks, ok bool, err error) {
	l, found := r.Src.(source).layers[digest]
	if !found || l.Whole {
		return Chunks{}, false, nil
	}
	recs := &recList{}
	defer func() {
		if !ok {
			recs.close()
		}
	}()
	var at int64 // where in the layer the op lies
	err = r.d.walk(l, func(o op, _ io.Reader) error {
		defer func() { at += o.n }()
		switch o.kind {
		case opBase:
			base := r.baseRecs(o.layer, entry)
			if base == nil {
				return errUnknown
			}
			return base.from(o.off, func(c rec) bool {
				if c.off+int64(c.size) > o.off+o.n {
					return false
				}
				recs.add(rec{c.sum, at + c.off - o.off, c.size})
				return true
			})
		case opPack:
			pos := at
			return chunks(bufio.NewReaderSize(io.NewSectionReader(r.d.pack, o.off, o.n), maxChunk), o.n, func(p []byte) error {
				recs.add(rec{sha256.Sum256(p), pos, uint32(len(p))})
				pos += int64(len(p))
				return nil
			})
		}
		return nil
	})
	if errors.Is(err, errUnknown) {
		return Chunks{}, false, nil
	}
	if err != nil {
		return Chunks{}, false, err
	}
	return Chunks{Layer{DiffID: l.DiffID, Size: l.Size}, recs}, true, nil
}

// errUnknown: a layer copies from a base layer whose chunks are not known.
var errUnknown = errors.New("a base layer's chunks are not known")

// baseRecs returns the chunk records of base layer i, from entry the first time, kept until
// Close; nil where entry does not give them.
func (r *Rebuilt) baseRecs(i uint32, entry func(v1.Hash) (Chunks, bool)) *recList {
	r.mu.Lock()
	defer r.mu.Unlock()
	if recs, ok := r.base[i]; ok {
		return recs
	}
	if r.base == nil {
		r.base = map[uint32]*recList{}
	}
	l := r.d.h.Base[i]
	ch, ok := entry(l.DiffID)
	if !ok || ch.Size != l.Size {
		r.base[i] = nil
		return nil
	}
	if r.kept += ch.recs.len(); r.kept > keptRecs { // too many in memory: on disk
		ch.recs.spill()
	}
	r.base[i] = ch.recs
	return ch.recs
}

// keptRecs is how many records of base layers Chunks keeps in memory (48 bytes each).
const keptRecs = 1 << 17

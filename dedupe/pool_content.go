package dedupe

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/content"
)

// A pool stores a layer that came uncompressed as content (package content) when the recipe
// over what the pool holds and the pack of the chunks it lacks take at most 1/contentShare
// of the layer's gzip blob; else whole, as a gzip blob. Content is stored over whole layers
// and over the packs of layers stored as content, never over a layer stored as content: a
// rebuild reads blobs, never another rebuild.
const contentShare = 4

// maxIndexChunks bounds the chunks of the pool's content an add indexes, the layers and packs
// of the newest bundles first: about 5 GB of layers of files of tens of KB, whose entries an
// add reads in a fraction of a second.
var maxIndexChunks = 1 << 17 // a variable for the tests

// contentDir keeps, by the sha256 of their bytes, where the chunks of the pool's whole layers
// and packs lie (a content.Cache): an add indexes the pool without reading its layers.
func (p *Pool) contentDir() string { return filepath.Join(p.Dir, "ferry", "content") }

// A poolIndex is the content an add stores layers over, and the part holding each layer of
// the index, by sum.
type poolIndex struct {
	*content.Index
	parts map[string]Part
}

// contentIndex indexes the parts content can be stored over (bases), the newest bundles'
// first, as far as maxIndexChunks; the parts whose chunks are not known yet (a pool of an
// older ferry: gc learns them) stay out.
func (p *Pool) contentIndex(records []*Record) *poolIndex {
	cache := content.NewCache(p.contentDir())
	x := &poolIndex{content.NewIndex(), map[string]Part{}}
	for i := len(records) - 1; i >= 0 && x.Chunks() < maxIndexChunks; i-- {
		for _, part := range records[i].bases() {
			if _, ok := x.parts[part.Sum]; ok {
				continue
			}
			if ch, ok := cache.Entry(sha256Hex(part.Sum)); ok && ch.Size == part.Raw {
				x.AddChunks(ch)
				x.parts[part.Sum] = part
			}
		}
	}
	return x
}

// bases returns the parts of r content can be stored over: its whole layers that came
// uncompressed, and its content's packs and what they build on, sorted.
func (r *Record) bases() []Part {
	seen := map[string]Part{}
	for d, s := range r.Layers {
		seen[d] = Part{Stored: s, Sum: d, Raw: r.Blobs[d]}
	}
	for _, c := range r.Content {
		for _, part := range c.Base {
			seen[part.Sum] = part
		}
		if c.Pack != nil {
			seen[c.Pack.Sum] = *c.Pack
		}
	}
	out := make([]Part, 0, len(seen))
	for _, part := range seen {
		out = append(out, part)
	}
	slices.SortFunc(out, func(a, b Part) int { return cmp.Compare(a.Sum, b.Sum) })
	return out
}

// layer names a part as package content does: by the sha256 and size of its bytes.
func (part Part) layer() content.Layer {
	return content.Layer{DiffID: sha256Hex(part.Sum), Size: part.Raw}
}

// stored says how to rebuild layer (hex digest, size bytes) from c.
func (c ContentLayer) stored(layer string, size int64) content.Stored {
	s := content.Stored{Layer: content.Layer{DiffID: sha256Hex(layer), Size: size}, Recipe: c.Recipe.layer()}
	if c.Pack != nil {
		s.Pack = c.Pack.layer()
	}
	for _, part := range c.Base {
		s.Base = append(s.Base, part.layer())
	}
	return s
}

// partsBase opens the parts of a layer stored as content, decompressed: the content.Base its
// rebuild reads.
type partsBase struct {
	p     *Pool
	blobs map[v1.Hash]string // sum → blob (hex)
}

func (p *Pool) partsOf(c ContentLayer) partsBase {
	b := partsBase{p, map[v1.Hash]string{}}
	for _, part := range c.parts() {
		b.blobs[sha256Hex(part.Sum)] = part.Digest
	}
	return b
}

func (b partsBase) Open(ctx context.Context, layers []content.Layer, each func(int, io.Reader) error) (func(), error) {
	for i, l := range layers {
		rc, err := b.p.openRaw(b.blobs[l.DiffID])
		if err != nil {
			return nil, fmt.Errorf("the blob holding %s: %w", l.DiffID, err)
		}
		err = each(i, archive.ContextReader(ctx, rc))
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// openRaw returns the decompressed content of a blob the pool holds.
func (p *Pool) openRaw(hexDigest string) (io.ReadCloser, error) {
	f, err := os.Open(p.BlobPath(sha256Hex(hexDigest)))
	if err != nil {
		return nil, err
	}
	zr, _, err := compress.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w", hexDigest, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, closers{zr, f}}, nil
}

type closers []io.Closer

func (cs closers) Close() error {
	for _, c := range cs {
		c.Close()
	}
	return nil
}

// openContent returns layer (hex digest, size bytes), stored as c, rebuilt as it is read: a
// read fails at the end unless the layer hashes to its digest.
func (p *Pool) openContent(ctx context.Context, layer string, size int64, c ContentLayer) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		err := c.stored(layer, size).Rebuild(ctx, pw, p.partsOf(c), "")
		if err != nil {
			err = fmt.Errorf("rebuilding layer sha256:%s: %w", layer, err)
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// An encoded layer is what Encode said of it, and the recipe and pack it wrote, as files.
type encoded struct {
	enc          *content.Encoded
	recipe, pack Stored
}

// encodeFiles encodes a layer read from r over x into new files at recipe and pack.
func (x *poolIndex) encodeFiles(ctx context.Context, r io.Reader, recipe, pack string) (*encoded, error) {
	rf, pf := newBlobFile(recipe), newBlobFile(pack)
	enc, err := x.Encode(ctx, r, rf, pf)
	e := &encoded{enc: enc}
	var errs [2]error
	e.recipe, errs[0] = rf.close()
	e.pack, errs[1] = pf.close()
	for _, cerr := range errs {
		if err == nil {
			err = cerr
		}
	}
	return e, err
}

// content returns the layer as the pool would store it as content (whole: the size of its
// gzip blob), or nil when it is not worth it.
func (e *encoded) content(x *poolIndex, whole int64) *ContentLayer {
	if e.enc.GaveUp || contentShare*(e.recipe.Size+e.pack.Size) > whole {
		return nil
	}
	c := &ContentLayer{Recipe: Part{e.recipe, e.enc.Recipe.DiffID.Hex, e.enc.Recipe.Size}, Whole: whole}
	if e.enc.Pack.Size > 0 {
		c.Pack = &Part{e.pack, e.enc.Pack.DiffID.Hex, e.enc.Pack.Size}
	}
	for _, l := range e.enc.Base {
		c.Base = append(c.Base, x.parts[l.DiffID.Hex])
	}
	return c
}

// An encoding encodes a layer as content over the pool's index from a copy of its bytes as
// they stream in, in a goroutine of its own, into two temporary files. Its Write never
// fails: once the encoder has stopped, copies go nowhere.
type encoding struct {
	pw      *io.PipeWriter
	stopped bool
	done    chan struct{}
	*encoded
	err error
}

// encode starts encoding a layer into the temporary files recipe and pack.
func (x *poolIndex) encode(ctx context.Context, recipe, pack string) *encoding {
	pr, pw := io.Pipe()
	e := &encoding{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		e.encoded, e.err = x.encodeFiles(ctx, pr, recipe, pack)
		pr.CloseWithError(fmt.Errorf("the encoder stopped: %w", e.err))
	}()
	return e
}

func (e *encoding) Write(p []byte) (int, error) {
	if !e.stopped {
		if _, err := e.pw.Write(p); err != nil {
			e.stopped = true
		}
	}
	return len(p), nil
}

// wait ends the copy, which failed with err if not nil, and waits for the encoder.
func (e *encoding) wait(err error) error {
	e.pw.CloseWithError(err)
	<-e.done
	return e.err
}

// A blobFile is a new file being written, hashed as it goes. A file that cannot be made
// fails the first write.
type blobFile struct {
	f   *os.File
	err error
	h   hash.Hash
	n   int64
}

func newBlobFile(path string) *blobFile {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	return &blobFile{f: f, err: err, h: sha256.New()}
}

func (b *blobFile) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.f.Write(p)
	b.h.Write(p[:n])
	b.n += int64(n)
	return n, err
}

// close syncs and closes the file, and returns its digest and size.
func (b *blobFile) close() (Stored, error) {
	if b.err != nil {
		return Stored{}, b.err
	}
	err := b.f.Sync()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return Stored{Digest: archive.HashOf(b.h).Hex, Size: b.n}, err
}

package transfer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/store"
)

// ContentIndex indexes, file by file, the layers of every image spec holds: a bundle file
// (loaded at the destination), or a store (on host, if set), whose images are read once,
// what was learnt kept in the user's cache: a store whose every layer is in the cache is not
// read again.
func ContentIndex(ctx context.Context, spec, host string, opts Options) (*content.Index, error) {
	cache := content.NewCache(contentCache())
	if isFile(spec) {
		im, err := Open(ctx, []string{spec}, SaveOptions{Options: opts})
		if err != nil {
			return nil, err
		}
		defer im.Close()
		return indexImages(ctx, cache, im)
	}
	st, done, err := OpenStore(ctx, spec, host, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	return storeIndex(ctx, st, cache, opts.Note)
}

// storeIndex indexes the layers of every image st holds, from the cache when it holds every
// one; note, if set, is told when the store's images are read.
func storeIndex(ctx context.Context, st store.Store, cache *content.Cache, note func(string)) (*content.Index, error) {
	if x := fromCache(ctx, st, cache); x != nil {
		return x, nil
	}
	if note != nil {
		note(fmt.Sprintf("%s: reading every image once to index the content of its layers", st))
	}
	im, err := readAll(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st, err)
	}
	defer im.Close()
	return indexImages(ctx, cache, im)
}

// contentCache is where what indexing learnt is kept: the user's cache directory, if any.
func contentCache() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "ferry", "content")
}

// fromCache indexes st from the cache alone, when it holds every layer st's inventory lists;
// else it returns nil.
func fromCache(ctx context.Context, st store.Store, cache *content.Cache) *content.Index {
	inv, err := st.Inventory(ctx)
	if err != nil || len(inv.DiffIDs) == 0 {
		return nil
	}
	x := content.NewIndex()
	for _, hex := range inv.DiffIDs {
		if !cache.Load(x, v1.Hash{Algorithm: "sha256", Hex: hex}) {
			return nil
		}
	}
	return x
}

// indexImages indexes the layers of im's images, each named by its image's first tag: those
// the cache lacks are read, as many at once as there are processors.
func indexImages(ctx context.Context, cache *content.Cache, im *store.Images) (*content.Index, error) {
	x := content.NewIndex()
	var read []*archive.Layer
	queued := map[v1.Hash]bool{}
	for _, img := range im.Bundle.Images {
		for _, l := range img.Layers {
			if !queued[l.DiffID] && !x.Holds(l.DiffID) && !cache.Load(x, l.DiffID) {
				queued[l.DiffID] = true
				read = append(read, l)
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, l := range read {
		g.Go(func() error { return addLayer(gctx, x, cache, im.Src, l) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, img := range im.Bundle.Images {
		ref := img.ID().String()
		if len(img.RepoTags) > 0 {
			ref = img.RepoTags[0]
		}
		for _, l := range img.Layers {
			x.Name(l.DiffID, ref)
		}
	}
	cache.Save(x)
	return x, nil
}

// readAll reads every tagged image of st.
func readAll(ctx context.Context, st store.Store) (*store.Images, error) {
	rd, ok := st.(store.Reader)
	if !ok {
		return nil, fmt.Errorf("ferry cannot read images from this store")
	}
	var tags []string
	if t, ok := st.(store.Tagger); ok {
		var err error
		if tags, err = t.Tagged(ctx); err != nil {
			return nil, err
		}
	} else {
		inv, err := st.Inventory(ctx)
		if err != nil {
			return nil, err
		}
		for _, img := range inv.Images {
			if len(img.Tags) > 0 {
				tags = append(tags, img.Tags[0])
			}
		}
	}
	if len(tags) == 0 {
		return store.NewImages(&archive.Bundle{}, nil, nil), nil
	}
	return rd.Open(ctx, tags, store.ReadOptions{})
}

// addLayer adds a layer whose blob src serves to x, and to the cache.
func addLayer(ctx context.Context, x *content.Index, cache *content.Cache, src archive.BlobSource, l *archive.Layer) error {
	return uncompressed(ctx, src, l, func(r io.Reader) error {
		got, err := cache.Add(ctx, x, r)
		if err == nil && got != l.DiffID {
			err = fmt.Errorf("%w: layer %s: its tar hashes to %s", archive.ErrDiffIDMismatch, l.DiffID, got)
		}
		return err
	})
}

// uncompressed hands do the uncompressed tar of layer l, whose blob src serves.
func uncompressed(ctx context.Context, src archive.BlobSource, l *archive.Layer, do func(io.Reader) error) error {
	rc, err := src.Open(ctx, l.Blob)
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	return decompressed(rc, l, do)
}

// decompressed calls do with the tar of layer l, whose blob rc reads.
func decompressed(rc io.Reader, l *archive.Layer, do func(io.Reader) error) error {
	zr, _, err := compress.NewReader(rc)
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", l.Digest, err)
	}
	defer zr.Close()
	return do(zr)
}

// storeBase reads the layers a content delta copies from the store it is loaded into: from
// the images read ahead, if any, then from the images the delta names for each, in the
// store's own words.
type storeBase struct {
	st  store.Store
	pre *prefetch // nil: none
}

func (b storeBase) Open(ctx context.Context, layers []content.Layer, each func(int, io.Reader) error) (func(), error) {
	rd, ok := b.st.(store.Reader)
	if !ok {
		return nil, fmt.Errorf("%s: ferry cannot read its layers, which a content delta is rebuilt from", b.st)
	}
	k := &keeper{}
	if err := b.open(ctx, rd, layers, k, each); err != nil {
		k.release()
		return nil, err
	}
	return k.release, nil
}

func (b storeBase) open(ctx context.Context, rd store.Reader, layers []content.Layer, k *keeper, each func(int, io.Reader) error) error {
	pending := map[v1.Hash]int{}
	var refs []string
	for i, l := range layers {
		pending[l.DiffID] = i
		for _, r := range l.Refs {
			if !slices.Contains(refs, r) {
				refs = append(refs, r)
			}
		}
	}
	for _, im := range b.pre.images() {
		if err := serveFrom(ctx, im, pending, each, k); err != nil {
			return err
		}
	}
	for _, ref := range refs {
		if len(pending) == 0 {
			break
		}
		if err := readFrom(ctx, rd, []string{ref}, pending, k, each); err != nil {
			return err
		}
	}
	if t, ok := b.st.(store.Tagger); ok && len(pending) > 0 {
		// The images named are gone, renamed, or named otherwise here (a pool's NAME/TAG):
		// read every image the store lists.
		tags, err := t.Tagged(ctx)
		if err == nil && len(tags) > 0 {
			err = readFrom(ctx, rd, tags, pending, k, each)
		}
		if err != nil {
			return err
		}
	}
	for _, l := range layers {
		if _, ok := pending[l.DiffID]; ok {
			return fmt.Errorf("%w: %s lacks layer %s, which the content delta builds on (it looked in %s)", archive.ErrMissingBlob, b.st, l.DiffID, quoteList(l.Refs))
		}
	}
	return nil
}

// readFrom reads the pending layers the images refs name hold, as many at once as there are
// processors (Images serve their blobs concurrently); refs the store does not know are
// skipped: other images may hold the layers. A layer the store keeps as an uncompressed file
// is given whole, to be read in place: it stays open, with its images, until k is released.
func readFrom(ctx context.Context, rd store.Reader, refs []string, pending map[v1.Hash]int, k *keeper, each func(int, io.Reader) error) error {
	im, err := rd.Open(ctx, refs, store.ReadOptions{})
	if err != nil {
		return ctx.Err()
	}
	k.keep(im)
	return serveFrom(ctx, im, pending, each, k)
}

// serveFrom hands each the pending layers im holds, as readFrom says.
func serveFrom(ctx context.Context, im *store.Images, pending map[v1.Hash]int, each func(int, io.Reader) error, k *keeper) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, l := range im.Bundle.LayerOrder() {
		i, ok := pending[l.DiffID]
		if !ok {
			continue
		}
		delete(pending, l.DiffID)
		g.Go(func() error {
			rc, err := im.Src.Open(gctx, l.Blob)
			if err != nil {
				return fmt.Errorf("reading layer %s: %w", l.Digest, err)
			}
			if _, ok := rc.(io.ReaderAt); ok && l.Digest == l.DiffID {
				k.keep(rc)
				return each(i, rc)
			}
			defer rc.Close()
			return decompressed(rc, l, func(r io.Reader) error { return each(i, r) })
		})
	}
	return g.Wait()
}

// A prefetch reads images of a store in the background: on the host, those a content delta
// will likely build on, while the other side makes it.
type prefetch struct {
	done   chan struct{}
	ims    []*store.Images
	cancel context.CancelFunc
}

// startPrefetch starts reading refs from st, each on its own (one the store lacks is
// skipped).
func startPrefetch(ctx context.Context, st store.Store, refs []string) *prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetch{done: make(chan struct{}), cancel: cancel}
	rd, ok := st.(store.Reader)
	if !ok {
		refs = nil
	}
	go func() {
		defer close(p.done)
		for _, ref := range refs {
			if ctx.Err() != nil {
				return
			}
			if im, err := rd.Open(ctx, []string{ref}, store.ReadOptions{}); err == nil {
				p.ims = append(p.ims, im)
			}
		}
	}()
	return p
}

// images waits for the images read ahead, and returns them; none for a nil p.
func (p *prefetch) images() []*store.Images {
	if p == nil {
		return nil
	}
	<-p.done
	return p.ims
}

// close stops the reading, and lets go of what was read.
func (p *prefetch) close() {
	p.cancel()
	for _, im := range p.images() {
		im.Close()
	}
}

// A keeper keeps what a content rebuild reads in place open until it is released.
type keeper struct {
	mu   sync.Mutex
	open []io.Closer
}

func (k *keeper) keep(c io.Closer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.open = append(k.open, c)
}

// release closes what k keeps, the last kept first.
func (k *keeper) release() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i := len(k.open) - 1; i >= 0; i-- {
		k.open[i].Close()
	}
	k.open = nil
}

// quoteList names refs for a message.
func quoteList(refs []string) string {
	if len(refs) == 0 {
		return "no image"
	}
	out := ""
	for i, r := range refs {
		if i > 0 {
			out += ", "
		}
		out += archive.Quote(r)
	}
	return out
}

// learning serves the blobs of a rebuilt bundle to a load and learns, as they go, the layers
// read whole into the user's content cache, each by the diffID its rebuild checks: the
// store's next content index (the next month's send through the helper) reads none of them
// again. A rebuilt layer's chunks are known from its recipe and what the cache knows of the
// layers it copies from (content.Rebuilt.Chunks); the others (carried whole, or built on a
// layer the cache lacks) are indexed as they are read. What it learns is a hint, kept only
// once the load succeeded; a layer not read to its end is not kept.
type learning struct {
	rb    *content.Rebuilt
	layer map[v1.Hash]bool // the uncompressed layers, by digest
	cache *content.Cache
	x     *content.Index
}

func newLearning(rb *content.Rebuilt) *learning {
	s := &learning{rb: rb, layer: map[v1.Hash]bool{}, cache: content.NewCache(contentCache()), x: content.NewIndex()}
	for _, l := range rb.Bundle.LayerOrder() {
		if l.Digest == l.DiffID {
			s.layer[l.Digest] = true
		}
	}
	return s
}

func (s *learning) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	rc, err := s.rb.Src.Open(ctx, b)
	if err != nil || !s.layer[b.Digest] {
		return rc, err
	}
	if ch, ok, err := s.rb.Chunks(b.Digest, s.cache.Entry); ok && err == nil {
		return &readWhole{ReadCloser: rc, want: b.Size, whole: func() { s.cache.Know(s.x, ch) }}, nil
	}
	t := &teeing{rc: rc, want: b.Size, ch: make(chan []byte, teeBuffers), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		// A layer it cannot read, or not to its size, is not learnt.
		s.cache.Learn(ctx, s.x, &copies{t: t}, content.Layer{DiffID: b.Digest, Size: b.Size})
	}()
	return t, nil
}

// Checked reports that the rebuilt bundle's source checks its blobs (archive.Checked).
func (s *learning) Checked() bool { return archive.Checked(s.rb.Src) }

// save keeps what was learnt, each layer named by its image's first tag.
func (s *learning) save() {
	for _, img := range s.rb.Bundle.Images {
		if len(img.RepoTags) > 0 {
			for _, l := range img.Layers {
				s.x.Name(l.DiffID, img.RepoTags[0])
			}
		}
	}
	s.cache.Save(s.x)
}

// readWhole calls whole once its reader is closed having read want bytes.
type readWhole struct {
	io.ReadCloser
	n, want int64
	whole   func()
}

func (r *readWhole) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n += int64(n)
	return n, err
}

func (r *readWhole) Close() error {
	if r.n == r.want && r.whole != nil {
		r.whole()
		r.whole = nil
	}
	return r.ReadCloser.Close()
}

// teeing reads a layer and copies what it reads to an indexer, which reads the copies on a
// goroutine of its own, up to teeBuffers pieces of teePiece bytes behind: the load waits on
// it only when it is that far behind. Once the indexer stopped, copies are dropped.
type teeing struct {
	rc      io.ReadCloser
	ch      chan []byte // copies of what was read, for the indexer
	cut     atomic.Bool // the layer was not read to its end
	ended   sync.Once   // Close's
	n, want int64
	done    chan struct{} // closed when the indexer returns
}

const (
	teePiece   = 32 << 10
	teeBuffers = 256 // 8 MiB
)

func (t *teeing) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	for b := p[:n]; len(b) > 0; {
		k := min(len(b), teePiece)
		select {
		case t.ch <- bytes.Clone(b[:k]):
		case <-t.done: // the indexer stopped
		}
		b = b[k:]
	}
	t.n += int64(n)
	return n, err
}

// Close ends the indexer's input: at the layer's end, or cut short (then not learnt).
func (t *teeing) Close() error {
	t.ended.Do(func() {
		t.cut.Store(t.n != t.want)
		close(t.ch)
		<-t.done
	})
	return t.rc.Close()
}

// copies reads a teeing's copies, for its indexer.
type copies struct {
	t   *teeing
	buf []byte
}

func (c *copies) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		b, ok := <-c.t.ch
		if !ok {
			if c.t.cut.Load() {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, io.EOF
		}
		c.buf = b
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

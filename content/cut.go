package content

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// Cutting a layer into chunks (hashing it, and each chunk) is most of what making a delta
// costs, and each layer's cut is its own: a cutter cuts the layers a delta rebuilds several
// at once, as many as there are processors, a few ahead of the maker, which then reads each
// layer once more, along the cut, to write its recipe in order. The delta is the same bytes
// as one cut layer by layer.

// A cutter cuts layers ahead of the maker, in order.
type cutter struct {
	cuts  []*pending
	ahead chan struct{} // a slot for each layer cut and not yet taken
}

// A pending cut is a layer's chunks once cut (done closed), or why it could not be.
type pending struct {
	l      *archive.Layer
	ch     Chunks
	err    error
	done   chan struct{}
	shared bool // an Ahead's: it lets go of the chunks, not the delta that takes them
}

// startCutting cuts layers, whose blobs src serves, ahead of take, until ctx ends: those an
// Ahead cut already (src is its Source) are taken from it.
func startCutting(ctx context.Context, layers []*archive.Layer, src archive.BlobSource) *cutter {
	var a *Ahead
	if s, ok := src.(aheadSource); ok {
		a, src = s.a, s.BlobSource
	}
	c := &cutter{ahead: make(chan struct{}, runtime.GOMAXPROCS(0))}
	begun := map[*pending]bool{}
	for _, l := range layers {
		k := a.take(l)
		if k == nil {
			k = &pending{l: l, done: make(chan struct{})}
		} else {
			begun[k] = true
		}
		c.cuts = append(c.cuts, k)
	}
	go func() {
		for i, k := range c.cuts {
			select {
			case c.ahead <- struct{}{}:
			case <-ctx.Done():
				for _, k := range c.cuts[i:] {
					if !begun[k] {
						k.err = context.Cause(ctx)
						close(k.done)
					}
				}
				return
			}
			if !begun[k] {
				go func() {
					defer close(k.done)
					k.ch, k.err = cutLayer(ctx, k.l, src)
				}()
			}
		}
	}()
	return c
}

// An Ahead cuts layers before a delta is made of them: a send reads a docker save whole
// before it makes a delta (the save says which layers are which at its end), but cuts each
// layer as soon as the save gave it whole, while the save goes on. The deltas made of a
// Source (one for each host) take the layers' cuts; a layer not cut ahead is cut then.
type Ahead struct {
	ctx  context.Context
	mu   sync.Mutex
	cuts map[v1.Hash]*pending // nil once closed
	slot chan struct{}        // one for each cut running
	wg   sync.WaitGroup
}

// NewAhead cuts layers until ctx ends.
func NewAhead(ctx context.Context) *Ahead {
	return &Ahead{ctx: ctx, cuts: map[v1.Hash]*pending{}, slot: make(chan struct{}, runtime.GOMAXPROCS(0))}
}

// Cut begins cutting l, an uncompressed layer whose blob src serves whole, unless it was.
func (a *Ahead) Cut(l *archive.Layer, src archive.BlobSource) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cuts == nil || a.cuts[l.DiffID] != nil {
		return
	}
	k := &pending{l: l, done: make(chan struct{}), shared: true}
	a.cuts[l.DiffID] = k
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(k.done)
		select {
		case a.slot <- struct{}{}:
			k.ch, k.err = cutLayer(a.ctx, l, src)
			<-a.slot
		case <-a.ctx.Done():
			k.err = context.Cause(a.ctx)
		}
	}()
}

// take returns the cut of l begun ahead, if any; nil for a nil a.
func (a *Ahead) take(l *archive.Layer) *pending {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if k := a.cuts[l.DiffID]; k != nil && k.l.Size == l.Size {
		return k
	}
	return nil
}

// Source is src, whose layers a delta takes from a's cuts where it can.
func (a *Ahead) Source(src archive.BlobSource) archive.BlobSource { return aheadSource{src, a} }

// Close waits for the cuts begun, and lets go of them: the deltas made of them are made.
func (a *Ahead) Close() {
	a.mu.Lock()
	left := a.cuts
	a.cuts = nil
	a.mu.Unlock()
	a.wg.Wait()
	for _, k := range left {
		k.ch.recs.close()
	}
}

// aheadSource is an Ahead's Source.
type aheadSource struct {
	archive.BlobSource
	a *Ahead
}

// Checked reports whether the source under checks its blobs (archive.Checked).
func (s aheadSource) Checked() bool { return archive.Checked(s.BlobSource) }

// cutLayer reads a layer and cuts it, checking it against its diffID (unless src checks it)
// and size.
func cutLayer(ctx context.Context, l *archive.Layer, src archive.BlobSource) (Chunks, error) {
	rc, err := src.Open(ctx, l.Blob)
	if err != nil {
		return Chunks{}, fmt.Errorf("reading layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	var known []Layer
	if archive.Checked(src) { // a spool of a bundle read whole: not hashed again
		known = append(known, Layer{DiffID: l.DiffID, Size: l.Size})
	}
	got, recs, err := scan(ctx, rc, known...)
	if err != nil {
		return Chunks{}, fmt.Errorf("reading layer %s: %w", l.Digest, err)
	}
	if got.DiffID != l.DiffID || got.Size != l.Size {
		return Chunks{}, fmt.Errorf("layer %s: %w: %d bytes hashing to %s", l.Digest, archive.ErrDigestMismatch, got.Size, got.DiffID)
	}
	recs.spill() // on disk until taken: the layers cut ahead take little memory
	return Chunks{got, recs}, nil
}

// take waits for the i'th layer's cut, and frees its slot for the next; done lets go of the
// cut once used, unless an Ahead keeps it for other deltas.
func (c *cutter) take(i int) (ch Chunks, done func(), err error) {
	k := c.cuts[i]
	<-k.done
	<-c.ahead
	if k.shared {
		return k.ch, func() {}, k.err
	}
	return k.ch, k.ch.recs.close, k.err
}

// replay reads a layer again, handing s its bytes in the pieces ch says it was cut into: the
// chunks with their sha256, what lies between them raw. The layer must end where ch says.
func replay(ctx context.Context, r io.Reader, ch Chunks, s segmenter) error {
	br := bufio.NewReaderSize(archive.ContextReader(ctx, r), 1<<20)
	buf := make([]byte, maxChunk)
	var pos int64
	raw := func(to int64) error {
		for pos < to {
			n := min(to-pos, int64(len(buf)))
			if _, err := io.ReadFull(br, buf[:n]); err != nil {
				return err
			}
			if err := s.raw(buf[:n]); err != nil {
				return err
			}
			pos += n
		}
		return nil
	}
	var err error
	eachErr := ch.recs.each(func(c rec) {
		switch {
		case err != nil:
		case c.off < pos:
			err = fmt.Errorf("chunks out of order at %d", c.off)
		default:
			if err = raw(c.off); err == nil {
				if _, err = io.ReadFull(br, buf[:c.size]); err == nil {
					err = s.chunk(buf[:c.size], c.sum)
					pos += int64(c.size)
				}
			}
		}
	})
	if err == nil {
		err = eachErr
	}
	if err == nil {
		err = raw(ch.Size)
	}
	if err == nil {
		if _, e := br.ReadByte(); e != io.EOF {
			err = fmt.Errorf("the layer runs on past its %d bytes", ch.Size)
		}
	}
	return err
}

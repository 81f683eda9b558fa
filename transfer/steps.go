package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Stepped loads. docker loads nothing from a stream cut short, but a daemon on the classic
// image store keeps every image it has loaded and skips the layers whose chain it holds (a
// store.Stepper). So such a host is sent the layers it lacks in steps: each step an untagged
// image of the first layers of an image sent (archive.Step, labelled store.StepLabel) that
// carries the layers after those the host holds; then the images themselves, which carry the
// last step's layers. A cut send loses the step in flight only: sent again, the host's
// inventory shows the steps' layers and only the rest travels. Once the images are loaded
// their steps are removed.
//
// Steps overlap: a step's bytes travel while the daemon unpacks the steps before, and its
// stream is ended, so that the daemon loads it, once the one before has loaded (it builds on
// its layers). Its stream opens before its layers come (see loadChain.open). Nor do steps
// wait for the source to be read: a step goes as soon as the read has spooled its layers (a
// docker save gives them in no useful order).

// stepMin is the layer bytes a step carries at least, but for the last of an image: few
// enough steps that their cost (a request, a config, an image record) stays small, small
// enough that a cut loses little.
const stepMin = 16 << 20

// A layerSource gives the layers of a source's images as they become available.
type layerSource struct {
	images [][]v1.Hash // each image's diffIDs
	total  int64       // the bytes of the layers, as the source holds them: an estimate of what to send
	// layer waits for the layer of that diffID; nil when the source does not carry it.
	layer func(ctx context.Context, diffID v1.Hash) (*archive.Layer, error)
	src   archive.BlobSource
}

// count counts the images' layers, each once.
func (ls *layerSource) count() int {
	seen := map[v1.Hash]bool{}
	for _, diffIDs := range ls.images {
		for _, d := range diffIDs {
			seen[d] = true
		}
	}
	return len(seen)
}

// bundleLayers is the layerSource of images read whole.
func bundleLayers(im *store.Images) *layerSource {
	carried := map[v1.Hash]*archive.Layer{}
	ls := &layerSource{src: im.Src}
	for _, img := range im.Bundle.Images {
		ls.images = append(ls.images, img.DiffIDs())
		for _, l := range img.Layers {
			if l.Present() && carried[l.DiffID] == nil {
				carried[l.DiffID] = l
				ls.total += l.Size
			}
		}
	}
	ls.layer = func(_ context.Context, d v1.Hash) (*archive.Layer, error) { return carried[d], nil }
	return ls
}

// spooled is the sink of a docker save's read into a spool (a spool.Spool, whose entries
// can be read as they are staged) that tells which layers are being spooled, by diffID: as
// they begin when the entry says which layer it is, else once hashed. A docker save's layers
// are uncompressed, so a layer's digest is its diffID: docker 25 and later name it so
// (blobs/sha256/DIFFID); before, each ID/layer.tar comes after its ID/json, which names the
// layer under it (archive.Entry.Under): a layer on none, or on one known, is the layer the
// images that far alike have next, if they agree. What a step reads from the spool is checked
// against its digest as it goes (archive.Write; what a spool holds compressed is copied once
// staged whole, which the read checks), and the daemon checks each layer's diffID: a wrong
// guess fails a step, it never loads.
type spooled struct {
	archive.Sink
	images  [][]v1.Hash // each image's diffIDs, as the daemon said before its save
	carried map[v1.Hash]bool

	mu     sync.Mutex
	blobs  map[v1.Hash]*archive.Blob // by the diffID of their content
	chains map[string][]v1.Hash      // a legacy layer's ID → the diffIDs of its chain
	added  chan struct{}             // closed, and replaced, on each blob known and at the end
	ended  bool
	err    error // why the read failed

	staged func(*archive.Layer) // if set, told each layer of the images once spooled whole
}

func newSpooled(sink archive.Sink, images [][]v1.Hash) *spooled {
	s := &spooled{Sink: sink, images: images, carried: map[v1.Hash]bool{}, blobs: map[v1.Hash]*archive.Blob{},
		chains: map[string][]v1.Hash{}, added: make(chan struct{})}
	for _, img := range images {
		for _, d := range img {
			s.carried[d] = true
		}
	}
	return s
}

// ociBlob is the name of a blob in a docker save of docker 25 and later.
var ociBlob = regexp.MustCompile(`^blobs/sha256/([0-9a-f]{64})$`)

// Entry tells a layer known from its entry once the spool reads its first byte: the spool has
// it staged by then, for the steps to read as it comes.
func (s *spooled) Entry(ctx context.Context, e archive.Entry, r io.Reader) error {
	s.mu.Lock()
	var d v1.Hash
	if m := ociBlob.FindStringSubmatch(e.Name); m != nil {
		if h := (v1.Hash{Algorithm: "sha256", Hex: m[1]}); s.carried[h] {
			d = h
		}
	} else if below, ok := s.below(e); ok {
		if next, ok := s.next(below); ok {
			s.chains[path.Dir(e.Name)] = append(slices.Clip(below), next)
			d = next
		}
	}
	s.mu.Unlock()
	if d != (v1.Hash{}) {
		r = &firstRead{r: r, do: func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.known(d, &archive.Blob{Digest: d, Size: e.Size, Path: e.Name})
		}}
	}
	return s.Sink.Entry(ctx, e, r)
}

// firstRead calls do as r is first read.
type firstRead struct {
	r  io.Reader
	do func()
}

func (f *firstRead) Read(p []byte) (int, error) {
	if f.do != nil {
		f.do()
		f.do = nil
	}
	return f.r.Read(p)
}

func (s *spooled) Hashed(e archive.Entry, digest, diffID v1.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if below, ok := s.below(e); ok && s.chains[path.Dir(e.Name)] == nil {
		s.chains[path.Dir(e.Name)] = append(slices.Clip(below), diffID)
	}
	if s.blobs[diffID] == nil {
		s.known(diffID, &archive.Blob{Digest: digest, Size: e.Size, Path: e.Name})
	}
	if s.staged != nil && digest == diffID && s.carried[diffID] {
		s.staged(&archive.Layer{Blob: &archive.Blob{Digest: digest, Size: e.Size, Path: e.Name}, DiffID: diffID})
	}
}

// below returns the chain of the layer a legacy layer entry is on, if known.
func (s *spooled) below(e archive.Entry) ([]v1.Hash, bool) {
	if e.Under == nil {
		return nil, false
	}
	if *e.Under == "" {
		return nil, true
	}
	chain, ok := s.chains[*e.Under]
	return chain, ok
}

// next returns the layer on the chain below in the images that have it, if they agree.
func (s *spooled) next(below []v1.Hash) (v1.Hash, bool) {
	var d v1.Hash
	for _, img := range s.images {
		if len(img) > len(below) && slices.Equal(img[:len(below)], below) {
			if d != (v1.Hash{}) && img[len(below)] != d {
				return v1.Hash{}, false
			}
			d = img[len(below)]
		}
	}
	return d, d != v1.Hash{}
}

func (s *spooled) known(diffID v1.Hash, b *archive.Blob) {
	s.blobs[diffID] = b
	close(s.added)
	s.added = make(chan struct{})
}

func (s *spooled) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended, s.err = true, err
	close(s.added)
	s.added = make(chan struct{})
}

func (s *spooled) Commit(ctx context.Context, b *archive.Bundle) error {
	err := s.Sink.Commit(ctx, b)
	s.end(err)
	return err
}

func (s *spooled) Abort(err error) {
	s.Sink.Abort(err)
	s.end(err)
}

func (s *spooled) layer(ctx context.Context, d v1.Hash) (*archive.Layer, error) {
	for {
		s.mu.Lock()
		blob, ended, err, added := s.blobs[d], s.ended, s.err, s.added
		s.mu.Unlock()
		switch {
		case blob != nil:
			return &archive.Layer{Blob: blob, DiffID: d}, nil
		case ended:
			return nil, err
		}
		select {
		case <-added:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// resumeHint ends the error of a stepped send that failed.
const resumeHint = "the steps the host loaded keep their layers there, and sending again sends only the rest"

// stepLoad sends a store.Stepper what it lacks of a source's images: their layers in steps,
// then the images with the last step's layers, then it removes the steps.
type stepLoad struct {
	h *host
	s store.Stepper
}

func (d *stepLoad) send(ctx context.Context, p *pending) error {
	h := d.h
	write := h.wire()
	h.res.Codec = write.Codec
	est := &stepEstimate{h: h, p: p, write: write, sent: h.res.Sent, estimated: -1}
	chain := &loadChain{s: d.s, write: write}
	chain.sent = func(n int64) { est.report(chain, n) }
	defer chain.wait() //nolint:errcheck // the loads started end, one way or the other, before the connection goes
	// The first load is opened while the source is read.
	chain.open(ctx)
	ls, im, err := p.layers(ctx)
	if err != nil {
		return err
	}
	if im != nil { // no step for images the host cannot complete
		if err := h.completes(h.inv.Thin(im.Bundle)); err != nil {
			return err
		}
	}
	est.atLeast(ls.total)
	steps, err := chain.steps(ctx, h.inv, ls)
	if err != nil {
		return fmt.Errorf("%w; %s", err, resumeHint)
	}
	if im, err = p.wait(ctx); err != nil {
		return err
	}
	b, err := h.lacks(im)
	if b == nil {
		return err
	}
	h.res.Full += wireSize(im, im.Bundle, write, false)
	// The steps' chain reports the bytes, and their compression goes on.
	if err := h.load(ctx, chain, b.Thin(steps.Has), im, true); err != nil {
		return err
	}
	if err := d.s.RemoveSteps(ctx, ls.images); err != nil {
		h.note(fmt.Sprintf("the images loaded, but removing the step images failed (docker image prune removes them): %v", err))
	}
	return nil
}

// A stepEstimate reports a stepped send's bytes against an estimate of what it needs in
// all: the bundle of what the host lacks tells the bytes to send once read, better after
// each load (a spool of what was read tells how it compresses as it is written).
type stepEstimate struct {
	h     *host
	p     *pending
	write archive.WriteOptions

	mu        sync.Mutex // the loads' writers report at once
	sent      int64      // the host's bytes sent before the source
	estimate  int64
	estimated int32 // the loads started when estimate was made
}

func (e *stepEstimate) atLeast(n int64) {
	e.mu.Lock()
	e.estimate = max(e.estimate, n)
	e.mu.Unlock()
}

// report reports n bytes sent through the chain.
func (e *stepEstimate) report(chain *loadChain, n int64) {
	e.mu.Lock()
	if loads := chain.loads.Load(); e.estimated != loads && e.p.done() {
		e.estimate, e.estimated = wireSize(e.p.im, e.h.inv.Thin(e.p.im.Bundle), e.write, true), loads
	}
	e.h.res.Sent = e.sent + n
	now, total, known := e.h.res.Sent, e.sent+e.estimate, e.estimate > 0
	e.mu.Unlock()
	if known { // the first load's first bytes go before the source says what it holds
		e.h.progress(now, total)
	}
}

// A loadChain runs a host's loads one after another, each overlapping the ones before: a
// load's stream opens, and takes the bundle's metadata (the daemon has the load under way),
// while the one before writes its layers; it writes its layers once the one before has
// written all of its, while the daemon unpacks the loads before; and its stream ends (the end
// of the archive starts the daemon's load) once the one before has loaded.
type loadChain struct {
	s      store.Streamer
	write  archive.WriteOptions // how every load's stream is written
	sent   func(n int64)        // all bytes written so far; called from the loads' writers
	n      atomic.Int64
	loads  atomic.Int32 // started so far
	last   *link        // the load started last
	opened *link        // a load opened for the next bundle, if any
}

// A link is one load of a chain.
type link struct {
	pw     *io.PipeWriter
	out    *countingWriter // into pw
	w      *archive.Writer // into out
	begun  chan error      // Begin's outcome
	result chan loadResult // the daemon's

	written  chan struct{} // closed once the stream's entries are written, or its write failed
	writeErr error         // why the write failed, if it did, set before written is closed
	done     chan struct{} // closed once this load and those before it are over; then:
	loaded   []string      // what the load says it loaded
	err      error         // why it failed, or the load before it
	cut      bool          // its stream stopped before its end
	n        int64         // the bytes written into its stream
}

type loadResult struct {
	refs []string
	err  error
}

// steps loads the steps of ls's images the host lacks, by inv, but the last: the images'
// load carries its layers. It returns what the steps loaded.
func (c *loadChain) steps(ctx context.Context, inv *dedupe.Inventory, ls *layerSource) (*dedupe.Inventory, error) {
	done := dedupe.NewInventory(dedupe.StoreDocker)
	for i, diffIDs := range ls.images {
		img := imageOf(diffIDs)
		k := 0 // the layers the host holds, or will once the steps so far load
		for k < len(diffIDs) && (inv.Has(img, k) || done.Has(img, k)) {
			k++
		}
		for k < len(diffIDs) {
			var layers []*archive.Layer
			leftOut := false // the source leaves layer k out: the images' load says whether the host has it
			for size := int64(0); k < len(diffIDs) && size < stepMin && !leftOut; {
				l, err := ls.layer(ctx, diffIDs[k])
				if err != nil {
					return nil, err
				}
				if leftOut = l == nil; !leftOut {
					layers = append(layers, l)
					size += l.Size
					k++
				}
			}
			if len(layers) > 0 && (k < len(diffIDs) || i < len(ls.images)-1) {
				b, err := archive.Step(diffIDs[:k], layers, map[string]string{store.StepLabel: "1"})
				if err != nil {
					return nil, err
				}
				if _, err := c.load(ctx, b, ls.src); err != nil {
					return nil, err
				}
				done.AddImage(diffIDs[:k], nil)
			}
			if leftOut {
				break
			}
		}
	}
	return done, nil
}

// open opens a load for the chain's next bundle, its stream begun (archive.Writer.Begin), so
// that the daemon has the load under way when the bundle comes: a stream that starts with
// megabytes at once, while the daemon sets up its unpacking and the machine is busy, backs
// up in the host's sshd, which then spends the CPU the daemon lacks (seen with OpenSSH 9.2).
func (c *loadChain) open(ctx context.Context) {
	pr, pw := io.Pipe()
	l := &link{pw: pw, begun: make(chan error, 1), result: make(chan loadResult, 1),
		written: make(chan struct{}), done: make(chan struct{})}
	var counted int64 // the link's writes are one after another
	l.out = &countingWriter{w: pw, report: func(n int64) {
		total := c.n.Add(n - counted)
		counted = n
		c.sent(total)
	}}
	go func() {
		refs, err := c.s.LoadStream(ctx, pr)
		pr.CloseWithError(cmp.Or(err, errors.New("the load returned")))
		l.result <- loadResult{refs, err}
	}()
	w, err := archive.NewWriter(l.out, c.write)
	l.w = w
	go func() {
		if err == nil {
			err = w.Begin()
		}
		l.begun <- err
	}()
	c.opened = l
}

// load loads b after the chain's loads so far, through the load opened for it if there is
// one, and returns once b's layers are being written, or its write failed (err).
func (c *loadChain) load(ctx context.Context, b *archive.Bundle, src archive.BlobSource) (*link, error) {
	if c.opened == nil {
		c.open(ctx)
	}
	prev, l := c.last, c.opened
	c.last, c.opened = l, nil
	c.loads.Add(1)
	writing := make(chan struct{}) // closed once b's layers are being written, or the write is over
	go func() {
		var before error // the load before failed: this one stops
		err := <-l.begun
		if err == nil {
			err = l.w.Metadata(b)
		}
		if err == nil && prev != nil { // the layers go once the load before has written its own
			select {
			case <-prev.written:
				before = prev.writeErr
				err = before
			case <-ctx.Done():
				err = context.Cause(ctx)
			}
		}
		close(writing)
		if err == nil {
			err = l.w.Blobs(ctx, src)
		}
		l.writeErr = err
		close(l.written)
		if err == nil && prev != nil { // the stream ends, and the daemon loads, once the load before has loaded
			<-prev.done
			before = prev.err
			err = before
		}
		if err == nil {
			err = l.w.End()
		}
		if err != nil {
			l.pw.CloseWithError(err)
		} else {
			l.pw.Close()
		}
		r := <-l.result
		if prev != nil {
			<-prev.done
		}
		l.loaded, l.err, l.cut, l.n = r.refs, cmp.Or(before, r.err), r.err != nil && err != nil, l.out.n.Load()
		close(l.done)
	}()
	<-writing
	select {
	case <-l.written:
		return l, l.writeErr
	default:
		return l, nil
	}
}

// wait waits for the link's load and those before it.
func (l *link) wait() ([]string, error) {
	<-l.done
	return l.loaded, l.err
}

// wait waits for the chain's loads, and says why the last failed if it did (a load fails
// when one before it did). A load opened for no bundle is ended: the daemon loads nothing.
func (c *loadChain) wait() error {
	if l := c.opened; l != nil {
		c.opened = nil
		l.pw.CloseWithError(errors.New("nothing to load"))
		<-l.result
	}
	if c.last == nil {
		return nil
	}
	_, err := c.last.wait()
	return err
}

// imageOf is an image of the given layers, as far as a store's inventory asks.
func imageOf(diffIDs []v1.Hash) *archive.Image {
	img := &archive.Image{}
	for _, d := range diffIDs {
		img.Layers = append(img.Layers, &archive.Layer{Blob: &archive.Blob{}, DiffID: d})
	}
	return img
}

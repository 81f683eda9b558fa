package transfer

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/archive/spool"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Pipelined sends. A host whose load takes docker-archive streams (store.Streamer) and
// complete images only, and lacks some of the images' layers (a cold host), needs the whole
// bundle, so it need not wait for the source to be read and spooled: while archive.Read
// streams a docker save (store.Saver) into the spool, each data entry is also forwarded, as
// it passes, into one tar stream (gzip-compressed once when asked) that fans out to every
// cold host's docker load; manifest.json goes last, once the source is verified, and any
// failure aborts the streams so the hosts load nothing. Other hosts get a thinned bundle
// from the spool as before. Which hosts are cold is settled before reading starts: hosts
// connect and take stock while the source's images are inspected.

// decideWait bounds how long the source waits, once it knows the images' layers, for the
// hosts to say whether they are cold; those that have not said by then take the spool.
const decideWait = 5 * time.Second

// A coldPlan is what the source and the docker hosts agree on before reading starts.
type coldPlan struct {
	hosts    int                  // hosts that will decide: those sent to from the start
	later    int                  // hosts that wait their turn, and take the spool
	compress compress.Compression // SendOptions.Compress

	known  chan struct{} // closed when images is set, or reading will not be pipelined
	images [][]v1.Hash   // the diffIDs of each image to send; nil if not pipelined
	total  int64         // the images' size, an estimate of the bytes to send

	mu      sync.Mutex
	decided chan struct{} // signalled on every decision
	pending int           // hosts yet to decide
	closed  bool          // decisions are no longer taken
	warm    int           // hosts that will write from the spool
	content int           // hosts that will make content deltas of the spool: read as it is
	cold    []*coldHost
	noZstd  bool // some host's load does not take zstd

	spooling chan struct{} // closed once early is set, or known to stay nil
	early    *layerSource  // the layers as the read spools them, for stepped sends
	once     sync.Once

	codec compress.Codec // how the stream to the cold hosts is compressed

	// The layers the read spools, cut as they come (content.Ahead) for the deltas of the
	// hosts that said which they lack (under mu).
	ahead  *content.Ahead
	staged []*archive.Layer     // spooled whole so far
	from   archive.BlobSource   // which serves them
	lacks  []func(v1.Hash) bool // for each host a delta will go to
}

func newColdPlan(ctx context.Context, hosts, later int, c compress.Compression) *coldPlan {
	return &coldPlan{hosts: hosts, later: later, compress: c, known: make(chan struct{}), decided: make(chan struct{}, hosts), pending: hosts,
		spooling: make(chan struct{}), ahead: content.NewAhead(ctx)}
}

// cutFor has the layers of the read that lacks says a host lacks cut ahead, those spooled
// already and those to come, for the host's delta.
func (p *coldPlan) cutFor(lacks func(v1.Hash) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lacks = append(p.lacks, lacks)
	for _, l := range p.staged {
		if lacks(l.DiffID) {
			p.ahead.Cut(l, p.from)
		}
	}
}

// spooledLayer is told each uncompressed layer the read spooled whole, which src serves: it
// is cut ahead if a host lacks it.
func (p *coldPlan) spooledLayer(l *archive.Layer, src archive.BlobSource) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.staged, p.from = append(p.staged, l), src
	for _, lacks := range p.lacks {
		if lacks(l.DiffID) {
			p.ahead.Cut(l, src)
			return
		}
	}
}

// spool says where the read's layers are as it spools them; nil: they are not. Called once
// reading starts (or will not).
func (p *coldPlan) spool(ls *layerSource) {
	p.once.Do(func() {
		p.early = ls
		close(p.spooling)
	})
}

// unpipelined says, if it was not said, that the source is not read in a way that can be
// pipelined, nor spooled as it is read.
func (p *coldPlan) unpipelined() {
	select {
	case <-p.known:
	default:
		p.publish(nil, 0)
	}
	p.spool(nil)
}

// publish says which layers the images have; nil means the source is not read in a way
// that can be pipelined. Called once.
func (p *coldPlan) publish(images [][]v1.Hash, total int64) {
	p.images, p.total = images, total
	if images == nil {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
	}
	close(p.known)
}

// layers waits for the images' layers: ok is false when sends are not pipelined.
func (p *coldPlan) layers(ctx context.Context, src *pending) (images [][]v1.Hash, ok bool) {
	select {
	case <-p.known:
		return p.images, p.images != nil
	case <-src.ready:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}

// How a host takes the source, if not as it is read (a coldHost).
type taking int

const (
	notTaking   taking = iota // it failed
	fromSpool                 // it writes the layers the spool holds
	makingDelta               // it reads the spool to make a content delta
)

// decide records a host's decision: cold (h != nil), else how it takes the source. It
// reports whether a cold host was taken: false when reading had started without it.
func (p *coldPlan) decide(h *coldHost, how taking) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pending--
	p.decided <- struct{}{}
	if p.closed {
		return false
	}
	switch {
	case h != nil:
		p.cold = append(p.cold, h)
	case how == fromSpool:
		p.warm++
	case how == makingDelta:
		p.content++
	}
	return true
}

// close waits for the hosts' decisions, at most decideWait, and stops taking them. It
// returns the cold hosts, how many others will write from a spool (those that have not
// decided, and those that wait their turn, too), how many will make content deltas of it,
// and whether every host that decided takes zstd.
func (p *coldPlan) close(ctx context.Context) (cold []*coldHost, spooled, content int, zstdOK bool) {
	timer := time.NewTimer(decideWait)
	defer timer.Stop()
	for {
		p.mu.Lock()
		if p.pending <= 0 {
			break
		}
		p.mu.Unlock()
		select {
		case <-p.decided:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		p.mu.Lock()
		break
	}
	defer p.mu.Unlock()
	p.closed = true
	return p.cold, p.warm + max(p.pending, 0) + p.later, p.content, !p.noZstd
}

// join decides, once the source's layers are known, whether a host takes the source as it
// is read: one whose load may (host.cold) and that lacks some of the layers. It returns the
// host's share of the stream, or nil when the host will take the source from the spool.
func (p *coldPlan) join(ctx context.Context, src *pending, h *host) *coldHost {
	if !h.zstd {
		p.mu.Lock()
		p.noZstd = true
		p.mu.Unlock()
	}
	images, pipelined := p.layers(ctx, src)
	// A store that takes complete images only and holds every layer may hold the images
	// whole: it waits for the source, and deliver sends it nothing it holds whole.
	if h.cold == nil || !pipelined || holdsEvery(h.inv, images) {
		how := fromSpool
		if _, ok := h.via.(*byContent); ok {
			how = makingDelta
		}
		p.decide(nil, how)
		return nil
	}
	c, pr := newColdHost(func(sent int64) { h.progress(sent, p.total) })
	if !p.decide(c, notTaking) {
		return nil // reading started without it
	}
	h.progress(0, p.total)
	go c.load(ctx, h.cold, pr)
	return c
}

// holdsEvery reports whether a host, by its inventory, holds every layer of the images.
func holdsEvery(inv *dedupe.Inventory, images [][]v1.Hash) bool {
	for _, diffIDs := range images {
		img := imageOf(diffIDs)
		for i := range img.Layers {
			if !inv.HoldsLayer(img, i) {
				return false
			}
		}
	}
	return true
}

// A coldHost is a docker load fed by the pipelined stream.
type coldHost struct {
	pw   *io.PipeWriter
	out  *countingWriter // counts what reaches pw
	done chan struct{}

	// once done is closed:
	loaded []string
	err    error // from the daemon

	mu     sync.Mutex
	failed error // why the stream to the host stopped, if it did
	whole  bool  // the stream was sent to its end
}

func newColdHost(progress func(int64)) (*coldHost, *io.PipeReader) {
	pr, pw := io.Pipe()
	return &coldHost{pw: pw, out: &countingWriter{w: pw, report: progress}, done: make(chan struct{})}, pr
}

// load runs the host's docker load of the stream.
func (h *coldHost) load(ctx context.Context, s store.Streamer, pr *io.PipeReader) {
	defer close(h.done)
	h.loaded, h.err = s.LoadStream(ctx, pr)
	pr.CloseWithError(errors.Join(h.err, errors.New("docker load returned"))) // stops the stream to this host
}

// stop ends the stream to the host with err (nil: the stream is whole).
func (h *coldHost) stop(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failed != nil || h.whole {
		return
	}
	if err == nil {
		h.whole = true
		h.pw.Close()
		return
	}
	h.failed = err
	h.pw.CloseWithError(err)
}

func (h *coldHost) dropped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed != nil
}

// result waits for the host's load and says how it went.
func (h *coldHost) result() ([]string, error) {
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	err := h.err
	if err == nil && !h.whole {
		err = cmp.Or(h.failed, errors.New("the stream ended early"))
	}
	if err != nil && !h.whole {
		err = streamCut(err, h.out.n.Load())
	}
	return h.loaded, err
}

// streamCut says why a load whose stream stopped after n bytes failed, and that it loaded
// nothing.
func streamCut(err error, n int64) error {
	return fmt.Errorf("%w; the stream stopped after %d bytes, and docker loads nothing from an incomplete stream: the host is as it was", err, n)
}

// errAllDropped says no cold host is left to stream to.
var errAllDropped = errors.New("every host stopped taking the stream")

// fanout writes to every cold host still taking the stream, at once; a host whose write
// fails drops out with that error and the others go on.
type fanout struct{ hosts []*coldHost }

func (f *fanout) Write(p []byte) (int, error) {
	var live []*coldHost
	for _, h := range f.hosts {
		if !h.dropped() {
			live = append(live, h)
		}
	}
	if len(live) == 0 {
		return 0, errAllDropped
	}
	write := func(h *coldHost) {
		if _, err := h.out.Write(p); err != nil {
			h.stop(err)
		}
	}
	if len(live) == 1 {
		write(live[0])
	} else {
		var wg sync.WaitGroup
		for _, h := range live {
			wg.Go(func() { write(h) })
		}
		wg.Wait()
	}
	return len(p), nil
}

// forwardSink is the archive.Sink that streams to the cold hosts.
type forwardSink struct {
	out *fanout
	zw  io.WriteCloser // compresses the stream as asked
	fw  *archive.Forwarder
}

func newForwardSink(hosts []*coldHost, enc compress.Encoder) (*forwardSink, error) {
	f := &forwardSink{out: &fanout{hosts: hosts}}
	zw, err := enc.Writer(f.out)
	if err != nil {
		return nil, err
	}
	f.zw, f.fw = zw, archive.NewForwarder(zw)
	return f, nil
}

func (f *forwardSink) Entry(_ context.Context, e archive.Entry, r io.Reader) error {
	return f.fw.Entry(e, r)
}

// Commit ends every stream still going; the hosts' loads say the rest.
func (f *forwardSink) Commit(_ context.Context, b *archive.Bundle) error {
	err := f.fw.Finish(b)
	if err == nil {
		err = f.zw.Close()
	}
	if err != nil {
		f.Abort(err)
		return err
	}
	for _, h := range f.out.hosts {
		h.stop(nil)
	}
	return nil
}

func (f *forwardSink) Abort(err error) {
	f.fw.Close()
	for _, h := range f.out.hosts {
		h.stop(err)
	}
}

// teeSink hands each entry to main and, through a pipe as main reads it, to fwd; fwd
// failing only drops it (its hosts say why), main failing fails the read.
type teeSink struct {
	main archive.Sink
	fwd  archive.Sink // nil once dropped
}

func (t *teeSink) Entry(ctx context.Context, e archive.Entry, r io.Reader) error {
	if t.fwd == nil {
		return t.main.Entry(ctx, e, r)
	}
	pr, pw := io.Pipe()
	fwded := make(chan error, 1)
	go func() {
		err := t.fwd.Entry(ctx, e, pr)
		pr.CloseWithError(cmp.Or(err, errors.New("forwarded"))) // stop the tee
		fwded <- err
	}()
	dw := &dropWriter{w: bufio.NewWriterSize(pw, archive.CopyBuffer)} // main may read in small pieces
	tee := io.TeeReader(r, dw)
	err := t.main.Entry(ctx, e, tee)
	if err == nil {
		_, err = io.Copy(io.Discard, tee) // the forwarder needs what main left unread
	}
	if err == nil && !dw.failed {
		dw.w.Flush() //nolint:errcheck // a failed forwarder says why through fwded
	}
	pw.CloseWithError(err)
	if ferr := <-fwded; ferr != nil || err != nil {
		t.drop(cmp.Or(err, ferr))
	}
	return err
}

func (t *teeSink) drop(err error) {
	if t.fwd != nil {
		t.fwd.Abort(err)
		t.fwd = nil
	}
}

func (t *teeSink) Commit(ctx context.Context, b *archive.Bundle) error {
	if err := t.main.Commit(ctx, b); err != nil {
		return err // Read aborts both
	}
	if t.fwd != nil {
		t.fwd.Commit(ctx, b) //nolint:errcheck // its hosts record the error
		t.fwd = nil
	}
	return nil
}

func (t *teeSink) Abort(err error) {
	t.main.Abort(err)
	t.drop(err)
}

// dropWriter writes to w until a write fails, then swallows the rest.
type dropWriter struct {
	w      *bufio.Writer
	failed bool
}

func (d *dropWriter) Write(p []byte) (int, error) {
	if !d.failed {
		if _, err := d.w.Write(p); err != nil {
			d.failed = true
		}
	}
	return len(p), nil
}

// noBlobs is the blob source of images read without a spool: every host took them as they
// were read.
type noBlobs struct{}

func (noBlobs) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%w: %s was streamed to the hosts, not kept", archive.ErrMissingBlob, b)
}

// read reads one save of refs once the hosts have said whether they are cold, forwarding it
// to the cold ones as it is read and spooling it for the others.
func (plan *coldPlan) read(ctx context.Context, d store.Saver, refs []string, opts store.ReadOptions) (_ *store.Images, err error) {
	var cold []*coldHost
	defer func() {
		if err != nil {
			for _, h := range cold {
				h.stop(err)
			}
		}
	}()
	images, total, err := d.SaveLayers(ctx, refs)
	if err != nil {
		return nil, err
	}
	plan.publish(images, total) // the hosts decide while the daemon prepares its save
	stream, err := d.Save(ctx, refs)
	cold, spooled, content, zstdOK := plan.close(ctx) // the cold hosts are stopped if the save failed
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	opts.Write = archive.WriteOptions{Encoder: plan.compress.Encoder(zstdOK)}
	plan.codec = opts.Write.Codec
	// The spool holds the stream's bytes already compressed when several hosts will write
	// them: compressed once for all. For one, it holds them as read, and they are compressed
	// as the link takes them: the CPU that takes is spread over the send, where compressing
	// all as docker save gives it would hold the link back while it lasts. The hosts that
	// make content deltas of it read it as it is: they write none of its layers (unless their
	// delta is no smaller, and then they compress as the link takes them).
	spoolAs := opts.Write
	if spooled < 2 {
		spoolAs = archive.WriteOptions{} // no codec
	}

	var sink archive.Sink = archive.Discard
	var src archive.BlobSource = noBlobs{}
	closeSpool := func() error { return nil }
	var sp *spool.Spool
	if spooled+content > 0 {
		if sp, err = spool.New(opts.TempDir, spoolAs); err != nil {
			return nil, err
		}
		sink, src, closeSpool = sp, sp, sp.Close
	}
	if len(cold) > 0 {
		fwd, err := newForwardSink(cold, opts.Write.Encoder)
		if err != nil {
			return nil, err
		}
		sink = &teeSink{main: sink, fwd: fwd}
	}
	if sp != nil {
		tracked := newSpooled(sink, images)
		tracked.staged = func(l *archive.Layer) { plan.spooledLayer(l, sp) }
		sink = tracked
		plan.spool(&layerSource{images: images, total: total, layer: tracked.layer, src: sp})
	}
	p := &store.Progress{Total: total, Report: opts.Progress}
	b, err := archive.Read(ctx, p.Reader(stream), sink, archive.ReadOptions{Trusted: true})
	if err != nil {
		return nil, fmt.Errorf("reading the save stream: %w", err)
	}
	return store.NewImages(b, src, closeSpool), nil
}

package transfer

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
)

// A host is one host of a send: its store, what it holds, how it is sent images (chosen
// once, from what the store can do), and how sending went. Its stages run one after another:
// open, takeStock, then each source in turn.
type host struct {
	s    *send
	name string // as given to Send
	dest sshconn.Destination
	conn *sshconn.Client // nil when SendOptions.Open opened the store

	st     store.Store
	inv    *dedupe.Inventory
	zstd   bool           // the store's load takes zstd
	via    delivery       // how the store is sent images
	cold   store.Streamer // the store's load, when it may take the first source as it is read
	closes []func() error

	planned bool // the host is sent to from the start, and the cold plan waits for it to decide
	decided bool // the cold plan knows whether the host takes the first source as it is read
	res     HostResult
}

// A delivery sends a host's store what it lacks of one source's images.
type delivery interface {
	send(ctx context.Context, p *pending) error
}

// run sends the host every source, and says how it went.
func (h *host) run(ctx context.Context) HostResult {
	err := h.sendAll(ctx)
	if h.planned && !h.decided {
		h.s.plan.decide(nil, notTaking)
	}
	for _, c := range slices.Backward(h.closes) {
		c()
	}
	if err != nil {
		h.res.Err = err
	} else {
		h.progress(h.res.Sent, h.res.Sent) // loaded: the estimate is done with
	}
	return h.res
}

func (h *host) sendAll(ctx context.Context) error {
	if err := h.open(ctx); err != nil {
		return err
	}
	if err := h.takeStock(ctx); err != nil {
		return err
	}
	h.choose()
	h.startHelper(ctx)
	for i, p := range h.s.reads {
		if p.plan != nil && h.planned {
			h.decided = true
			if c := p.plan.join(ctx, p, h); c != nil {
				if err := h.sendCold(ctx, c, p); err != nil {
					return err
				}
				continue
			}
		}
		if err := h.via.send(ctx, p); err != nil {
			return err
		}
		if i+1 < len(h.s.reads) { // the next source may build on what this one loaded
			inv, err := h.st.Inventory(ctx)
			if err != nil {
				return err
			}
			h.inv = inv
		}
	}
	return h.confirm(ctx)
}

// confirm checks that a store that loads streams (docker, podman) lists the images it
// reported loading: its word alone is not taken for it.
func (h *host) confirm(ctx context.Context) error {
	if _, ok := h.st.(store.Streamer); !ok {
		return nil
	}
	inv, err := h.st.Inventory(ctx)
	if err != nil {
		return fmt.Errorf("taking stock after loading: %w", err)
	}
	var lacking []string
	for _, p := range h.s.reads {
		for _, img := range p.im.Bundle.Images {
			if !inv.HoldsWhole(img) {
				lacking = append(lacking, cmp.Or(strings.Join(img.RepoTags, " "), img.ID().String()))
			}
		}
	}
	if len(lacking) > 0 {
		return fmt.Errorf("%w: %s reported loading the images, and then does not list %s", ErrNotLoaded, h.st, strings.Join(lacking, ", "))
	}
	return nil
}

// open connects to the host and opens its store.
func (h *host) open(ctx context.Context) error {
	o := h.s.opts
	if o.Open != nil {
		st, err := o.Open(ctx, h.name)
		if err != nil {
			return err
		}
		h.st, h.closes = st, append(h.closes, st.Close)
		return nil
	}
	c, err := sshconn.Dial(ctx, h.dest, o.SSH)
	if err != nil {
		return err
	}
	h.conn, h.closes = c, append(h.closes, c.Close)
	env := o.env(c, h.dest.Path)
	if o.Waiting != nil {
		env.Waiting = func(msg string) { o.Waiting(h.name + ": " + msg) }
	}
	if h.st, err = store.Open(ctx, h.s.to, env); err != nil {
		return err
	}
	h.closes = append(h.closes, h.st.Close)
	return nil
}

// takeStock learns what the store holds and what it takes: the store behind it, when that
// takes more (store.Fronted), and zstd.
func (h *host) takeStock(ctx context.Context) error {
	inv, err := h.st.Inventory(ctx)
	if err != nil {
		return err
	}
	h.inv = inv
	if b, binv := behind(ctx, h.st, inv, h.note); b != nil {
		h.st, h.inv, h.closes = b, binv, append(h.closes, b.Close)
	}
	h.res.Store = h.st.String()
	if h.inv.Complete {
		h.res.Complete = h.s.kind.Complete
	}
	z, ok := h.st.(store.ZstdTaker)
	h.zstd = ok && z.TakesZstd(ctx)
	if _, ok := h.st.(store.Streamer); ok && h.s.opts.Compress.Codec == compress.Zstd && !h.zstd {
		return fmt.Errorf("%s does not load zstd-compressed input (docker 23 and later do): send with --compress auto or gzip", h.st)
	}
	return nil
}

// choose chooses how the store is sent images, from what it can do, and whether its load
// may take the first source as it is read (a load of streams of complete images only: the
// cold plan sends it the stream when it lacks some of the layers).
func (h *host) choose() {
	switch st := h.st.(type) {
	case store.Stepper:
		if !h.inv.Complete {
			h.via = &stepLoad{h: h, s: st}
			return
		}
		h.via, h.cold = &streamLoad{h: h, s: st}, st
	case store.Streamer:
		h.via = &streamLoad{h: h, s: st}
		if h.inv.Complete {
			h.cold = st
		}
	case store.Unpacker:
		h.via = &packed{h: h, u: st}
	default:
		h.via = received{h}
	}
}

func (h *host) progress(sent, total int64) {
	if h.s.opts.Progress != nil {
		h.s.opts.Progress(h.name, sent, max(sent, total))
	}
}

func (h *host) note(msg string) {
	if h.s.opts.Note != nil {
		h.s.opts.Note(h.name + ": " + msg)
	}
}

// wire is how a stream to the host's load is compressed.
func (h *host) wire() archive.WriteOptions {
	return archive.WriteOptions{Encoder: h.s.opts.Compress.Encoder(h.zstd)}
}

// behind returns the store behind st (store.Fronted) and its inventory, when st takes
// complete images only and the store behind it takes more (docker on the containerd image
// store: its containerd, thin and resumable). When there is one that cannot be used, st
// takes complete images, and note is told why.
func behind(ctx context.Context, st store.Store, inv *dedupe.Inventory, note func(string)) (store.Store, *dedupe.Inventory) {
	f, ok := st.(store.Fronted)
	if !ok || !inv.Complete {
		return nil, nil
	}
	b, err := f.Behind(ctx)
	var binv *dedupe.Inventory
	if err == nil && b != nil {
		if binv, err = b.Inventory(ctx); err != nil {
			b.Close()
		}
	}
	if err != nil {
		note(err.Error() + ": sending complete images instead")
		return nil, nil
	}
	return b, binv
}

// lacks returns what the host lacks of im's images, by its inventory, and counts their
// layers; nil when its store takes complete images only and holds them whole, tagged alike.
// A store that holds images only is told what it leaves out (leftOut).
func (h *host) lacks(im *store.Images) (*archive.Bundle, error) {
	left, err := leftOut(h.st, im.Bundle)
	if err != nil {
		return nil, err
	}
	if left != "" {
		h.note(left)
	}
	if h.inv.Complete && h.inv.HoldsAll(im.Bundle) {
		layers, _ := countLayers(im.Bundle)
		h.res.Layers += layers
		h.res.Skipped += layers
		h.res.Full += wireSize(im, im.Bundle, h.s.opts.Read.Write, false)
		return nil, nil
	}
	b := h.inv.Thin(im.Bundle)
	if err := h.completes(b); err != nil {
		return nil, err
	}
	layers, skipped := countLayers(b)
	h.res.Layers += layers
	h.res.Skipped += skipped
	return b, nil
}

// completes checks that the store holds every layer b leaves out.
func (h *host) completes(b *archive.Bundle) error {
	if lacking := h.inv.Lacks(b); len(lacking) > 0 {
		return fmt.Errorf("%w: the images leave out %d layers %s does not have (diffIDs %s): send the bundle they come from first",
			archive.ErrMissingBlob, len(lacking), h.st, strings.Join(lacking, ", "))
	}
	return nil
}

// sendCold waits for the host's load of the stream it got as the source was read.
func (h *host) sendCold(ctx context.Context, c *coldHost, p *pending) error {
	loaded, err := c.result()
	h.res.Loaded = append(h.res.Loaded, loaded...)
	sent := c.out.n.Load()
	h.res.Sent += sent
	im, werr := p.wait(ctx)
	if werr != nil {
		return cmp.Or(err, werr)
	}
	h.res.Codec = p.plan.codec
	layers, _ := countLayers(im.Bundle)
	h.res.Layers += layers
	if err == nil {
		h.res.Full += sent // it was sent whole
	} else {
		h.res.Full += max(sent, wireSize(im, im.Bundle, h.s.opts.Read.Write, false))
	}
	return err
}

// streamLoad sends a store that loads docker-archive streams (store.Streamer) and takes
// complete images only one stream of the images it lacks.
type streamLoad struct {
	h *host
	s store.Streamer
}

func (d *streamLoad) send(ctx context.Context, p *pending) error {
	h := d.h
	im, err := p.wait(ctx)
	if err != nil {
		return err
	}
	b, err := h.lacks(im)
	if b == nil {
		return err
	}
	write := h.wire()
	h.res.Codec = write.Codec
	h.res.Full += wireSize(im, im.Bundle, write, false)
	sent := h.res.Sent
	total := sent + wireSize(im, b, write, true)
	chain := &loadChain{s: d.s, write: write, sent: func(n int64) { h.res.Sent = sent + n; h.progress(h.res.Sent, total) }}
	return h.load(ctx, chain, b, im, false)
}

// load loads b last in chain, and waits for it and the loads before it.
func (h *host) load(ctx context.Context, chain *loadChain, b *archive.Bundle, im *store.Images, stepped bool) error {
	l, _ := chain.load(ctx, b, im.Src)
	loaded, err := l.wait()
	h.res.Loaded = append(h.res.Loaded, loaded...)
	switch {
	case err != nil && stepped:
		err = fmt.Errorf("%w; %s", err, resumeHint)
	case l.cut:
		err = streamCut(err, l.n)
	}
	return err
}

// received sends a store what it lacks through its Receive: the blobs it does not hold.
type received struct{ h *host }

func (d received) send(ctx context.Context, p *pending) error {
	im, err := p.wait(ctx)
	if err != nil {
		return err
	}
	b, err := d.h.lacks(im)
	if b == nil {
		return err
	}
	return d.h.receiveBlobs(ctx, im, b)
}

// receiveBlobs feeds the store the blobs of b it does not hold.
func (h *host) receiveBlobs(ctx context.Context, im *store.Images, b *archive.Bundle) error {
	for _, blob := range b.Reachable() {
		h.res.Full += blob.Size
	}
	b = b.LeaveOut(func(blob *archive.Blob) bool { return h.inv.HasBlob(blob.Digest) })
	var total int64
	for _, blob := range b.Reachable() {
		if blob.Present() {
			total += blob.Size
		}
	}
	r, err := h.receive(ctx, total)
	if err != nil {
		return err
	}
	return r.finish(b, archive.Feed(ctx, b, im.Src, r.sink))
}

// A receipt is one bundle going into the store's Receive, its bytes counted as sent.
type receipt struct {
	h     *host
	rcv   store.Receiver
	sink  *countingSink
	sent  int64 // the host's bytes sent before the bundle
	total int64 // an estimate of the host's bytes sent once the bundle is in
}

// receive opens the store's Receive for a bundle of about total bytes.
func (h *host) receive(ctx context.Context, total int64) (*receipt, error) {
	rcv, err := h.st.Receive(ctx)
	if err != nil {
		return nil, err
	}
	r := &receipt{h: h, rcv: rcv, sent: h.res.Sent, total: h.res.Sent + total}
	r.sink = &countingSink{Receiver: rcv, held: map[string]bool{}, p: store.Progress{Report: func(n, _ int64) {
		h.res.Sent = r.sent + n
		h.progress(h.res.Sent, r.total)
	}}}
	return r, nil
}

// finish counts what the store held of the blobs as not sent, and the layers of b it held
// whole as Held, and says what it loaded, or why it did not (err, from feeding it).
func (r *receipt) finish(b *archive.Bundle, err error) error {
	if rs, ok := r.rcv.(store.Resumer); ok { // what the store held of a blob was never sent
		r.h.res.Sent = r.sent + r.sink.p.Done - rs.Resumed()
	}
	if err != nil {
		return fmt.Errorf("%w; what %s took in whole stays there, and sending again sends only the rest", err, r.h.st)
	}
	for _, l := range b.LayerOrder() {
		if r.sink.held["blobs/"+l.Digest.Algorithm+"/"+l.Digest.Hex] {
			r.h.res.Held++
		}
	}
	for _, l := range r.rcv.Loaded() {
		r.h.res.Loaded = append(r.h.res.Loaded, l.Ref)
	}
	return nil
}

// fail aborts the receipt with err, which did not come from feeding the store.
func (r *receipt) fail(err error) error {
	r.rcv.Abort(err)
	return r.finish(nil, err)
}

// countingWriter counts the bytes written through it and reports the count.
type countingWriter struct {
	w      io.Writer
	n      atomic.Int64
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.report(c.n.Add(int64(n)))
	return n, err
}

// countingSink counts the bytes of the entries it hands on, and notes the entries a
// store.Resumer held whole: none of their bytes moved.
type countingSink struct {
	store.Receiver
	p    store.Progress
	held map[string]bool // entry names
}

func (c *countingSink) Entry(ctx context.Context, e archive.Entry, r io.Reader) error {
	rs, _ := c.Receiver.(store.Resumer)
	var resumed int64
	if rs != nil {
		resumed = rs.Resumed()
	}
	done := c.p.Done
	err := c.Receiver.Entry(ctx, e, c.p.Reader(r))
	if err == nil && rs != nil && e.Size > 0 && rs.Resumed()-resumed == c.p.Done-done {
		c.held[e.Name] = true
	}
	return err
}

// countLayers counts the layer blobs of b's images and those b leaves out.
func countLayers(b *archive.Bundle) (layers, missing int) {
	seen := map[*archive.Blob]bool{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if !seen[l.Blob] {
				seen[l.Blob] = true
				layers++
				if l.Missing {
					missing++
				}
			}
		}
	}
	return layers, missing
}

// encodedSizer is a blob source that knows how many bytes a blob takes once encoded for a
// bundle (spool.Spool), and, for the others, how the blobs encoded so far shrank.
type encodedSizer interface {
	EncodedSize(b *archive.Blob, opts archive.WriteOptions) (int64, bool)
	EncodedRatio(opts archive.WriteOptions) (float64, bool)
}

// wireSize estimates the bytes of b written with opts: for each blob it carries, a tar
// header and its body as the source holds it encoded, else its size; with guess, the size
// at the ratio the source's blobs were encoded at so far, if they were (a progress
// estimate).
func wireSize(im *store.Images, b *archive.Bundle, opts archive.WriteOptions, guess bool) int64 {
	sizer, _ := im.Src.(encodedSizer)
	ratio, guessed := 1.0, false
	if sizer != nil && guess {
		if r, ok := sizer.EncodedRatio(opts); ok {
			ratio, guessed = r, true
		}
	}
	var n int64
	for _, blob := range b.Reachable() {
		if !blob.Present() {
			continue
		}
		size, ok := int64(0), false
		if sizer != nil {
			size, ok = sizer.EncodedSize(blob, opts)
		}
		if !ok {
			size = blob.Size
			if guessed {
				size = int64(float64(size) * ratio)
			}
		}
		n += 512 + size
	}
	return n
}

package transfer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/leftover"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer/helper"
)

// Sends by content. Where the ferry helper runs on a host (package helper), the host is sent
// what its store lacks as a content delta (content.Make) against the index of what the store
// holds, which the helper takes there, when the delta is smaller than the layers; the helper
// rebuilds the layers from the store's own and loads them with the same store code (Load).
// The delta is made whole before it goes, into the temp directory, so that its digest names
// it: a cut send leaves on the host what came, and the next send of the same delta sends only
// the rest. Whatever the helper cannot do goes to the host's delivery without it, and a note
// says why; with HelperAlways the host fails instead.

// byContent sends a host through its helper, and through next what the helper does not take.
type byContent struct {
	h    *host
	next delivery

	probed chan struct{}  // closed once the probe is over; then:
	remote *helper.Remote // the helper, if it may run there
	err    error          // why it cannot, once known

	prepared sync.Once      // the helper copied there, and the index asked for
	index    *content.Index // the store's, from the helper
	noted    sync.Once      // the note that the helper is not used

	mu      sync.Mutex
	loading *helper.Loading // the load begun with the index, reading the likely base
}

// startHelper probes the host for its helper in the background where the send may use it:
// on a store that holds layers a delta can build on, or every store with HelperAlways. Such
// a host waits for each source to be read whole. Once the sources' layers are known (a
// docker save says them before it starts) and the host lacks some, the helper is copied
// there if it must be, and asked for the store's index, while the sources are read.
func (h *host) startHelper(ctx context.Context) {
	mode := h.s.opts.Helper
	if mode == HelperNever || h.conn == nil || (mode == HelperAuto && len(h.inv.DiffIDs) == 0 && len(h.inv.Blobs) == 0) {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	d := &byContent{h: h, next: h.via, probed: make(chan struct{})}
	h.via, h.cold = d, nil
	done := make(chan struct{})
	go func() {
		defer close(done)
		switch {
		case !d.probe(ctx):
		case d.lacking(ctx):
			d.prepare(ctx)
		default: // the helper the probe started has nothing to do
			d.remote.Close()
		}
	}()
	h.closes = append(h.closes, func() error {
		cancel()
		<-done
		if l := d.takeLoading(); l != nil { // begun, and no delta sent: the helper stops
			l.Close()
		}
		if d.remote != nil {
			d.remote.Close()
			h.res.Helper = d.remote.Copied
		}
		return nil
	})
}

// probe finds whether the helper can run on the host, and reports whether it can.
func (d *byContent) probe(ctx context.Context) bool {
	defer close(d.probed)
	bin, err := helper.Self()
	if err == nil {
		d.remote, err = helper.Probe(ctx, d.h.conn, bin)
	}
	switch {
	case err != nil && ctx.Err() == nil:
		d.unavailable(err)
	case err != nil:
		d.err = context.Cause(ctx)
	}
	return err == nil
}

// lacking reports whether the host lacks layers of the sources worth its helper (worth), as
// soon as it is known: from the layers a docker save says before it starts where the helper
// is there already, else once the source is read and the layers' sizes known.
func (d *byContent) lacking(ctx context.Context) bool {
	h := d.h
	for _, p := range h.s.reads {
		if p.plan != nil && !h.inv.Complete && d.remote.Cost() == 0 {
			if images, ok := p.plan.layers(ctx, p); ok {
				if !holdsEvery(h.inv, images) {
					return true
				}
				continue
			}
		}
		im, err := p.wait(ctx)
		if err != nil {
			return false
		}
		b := h.inv.Thin(im.Bundle)
		if !(h.inv.Complete && h.inv.HoldsAll(im.Bundle)) && carriesLayers(b) && d.worth(b) {
			return true
		}
	}
	return false
}

// worth reports whether b, the images the host lacks, may go by content: with HelperAuto,
// where the helper is there already, or where the layers b carries add up to more than a
// quarter of copying it (which later sends to the host no longer pay): a few small layers go
// as layers, not after a copy of the helper of many times their size.
func (d *byContent) worth(b *archive.Bundle) bool {
	var layers int64
	for _, l := range b.LayerOrder() {
		if l.Present() {
			layers += l.Size
		}
	}
	return d.h.s.opts.Helper == HelperAlways || layers > d.remote.Cost()/4
}

// prepare copies the helper to the host if it must, and begins the load there, once: the
// helper sends the store's index, then reads the images the delta will likely build on
// while this side reads the sources and makes the delta.
func (d *byContent) prepare(ctx context.Context) {
	d.prepared.Do(func() {
		h := d.h
		err := d.remote.Install(ctx)
		var l *helper.Loading
		if err == nil {
			req := d.request()
			req.Index = true
			if l, err = d.remote.Load(ctx, req); err != nil {
				err = fmt.Errorf("%w: the content index of %s: %w", helper.ErrUnavailable, h.st, err)
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				d.unavailable(err)
			}
			return
		}
		h.res.Index += l.IndexSize
		d.notes(l.Notes)
		d.index = l.Index
		d.mu.Lock()
		d.loading = l
		d.mu.Unlock()
		if p := h.s.plan; p != nil { // the layers the index lacks are cut as the save spools them
			x := d.index
			p.cutFor(func(diffID v1.Hash) bool { return !x.Holds(diffID) })
		}
	})
}

// takeLoading returns the load begun, if any, once.
func (d *byContent) takeLoading() *helper.Loading {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.loading
	d.loading = nil
	return l
}

// request is a load for the helper into the host's store, naming the repositories of the
// images sent.
func (d *byContent) request() helper.Request {
	var repos []string
	for _, src := range d.h.s.sources {
		for _, r := range src.Refs {
			if ref, err := name.ParseReference(r); err == nil && !slices.Contains(repos, ref.Context().Name()) {
				repos = append(repos, ref.Context().Name())
			}
		}
	}
	return helper.Request{Store: d.h.s.to, Socket: d.h.dest.Path, Env: helperEnv(d.h.s.kind), Repos: repos}
}

// unavailable records that the helper cannot run, saying why once (HelperAuto) or failing
// the host's sends (HelperAlways).
func (d *byContent) unavailable(err error) {
	d.err = err
	if d.h.s.opts.Helper == HelperAlways {
		d.err = fmt.Errorf("--helper always: %w", err)
		return
	}
	d.noted.Do(func() { d.h.note(err.Error() + "; sending without it") })
}

func (d *byContent) send(ctx context.Context, p *pending) error {
	h := d.h
	im, err := p.wait(ctx)
	if err != nil {
		return err
	}
	b := h.inv.Thin(im.Bundle)
	if h.inv.Complete && h.inv.HoldsAll(im.Bundle) || !carriesLayers(b) { // nothing to rebuild
		return d.next.send(ctx, p)
	}
	select {
	case <-d.probed:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if d.err == nil && !d.worth(b) {
		return d.next.send(ctx, p)
	}
	if d.err == nil {
		d.prepare(ctx)
	}
	if d.err == nil {
		switch err := d.sendDelta(ctx, p, im, b); {
		case err == nil:
			return nil
		case errors.Is(err, helper.ErrUnavailable), errors.Is(err, helper.ErrRebuild):
			d.unavailable(err)
		case !errors.Is(err, errLayersSmaller):
			return err
		}
	}
	if d.err != nil && h.s.opts.Helper == HelperAlways {
		return d.err
	}
	return d.next.send(ctx, p)
}

// errLayersSmaller: the content delta is no smaller than the layers it replaces.
var errLayersSmaller = errors.New("the content delta is no smaller than the layers")

// sendDelta sends the host a content delta of b, the images of im (p's) it lacks, and has
// the helper load it.
func (d *byContent) sendDelta(ctx context.Context, p *pending, im *store.Images, b *archive.Bundle) error {
	h := d.h
	src := im.Src
	if p.plan != nil { // the layers cut as they were spooled
		src = p.plan.ahead.Source(src)
	}
	dl, err := makeDelta(ctx, src, b, d.index, h.s.opts.Read.TempDir)
	if err != nil {
		return err
	}
	defer dl.remove()
	if h.s.opts.Helper == HelperAuto && dl.size >= wireSize(im, b, h.wire(), true) {
		return errLayersSmaller
	}
	l := d.takeLoading()
	if l == nil {
		if l, err = d.remote.Load(ctx, d.request()); err != nil {
			return err
		}
	}
	start := h.res.Sent
	rep, sent, err := l.Send(ctx, dl.digest, dl.size, dl.f, func(n int64) {
		h.res.Sent = start + n
		h.progress(h.res.Sent, start+dl.size)
	})
	h.res.Sent = start + sent
	if rep != nil {
		d.notes(rep.Notes)
	}
	if err != nil {
		if !errors.Is(err, helper.ErrUnavailable) && !errors.Is(err, helper.ErrRebuild) {
			err = fmt.Errorf("%w; what reached the host stays there, and sending again sends only the rest", err)
		}
		return err
	}
	d.loaded(im, b, dl, sent, rep.Loaded)
	return nil
}

// notes passes on what the store on the host said.
func (d *byContent) notes(notes []string) {
	for _, n := range notes {
		d.h.note(n)
	}
}

// loaded counts a delta the helper loaded.
func (d *byContent) loaded(im *store.Images, b *archive.Bundle, dl *madeDelta, sent int64, refs []string) {
	r := &d.h.res
	layers, skipped := countLayers(b)
	r.Layers += layers
	r.Skipped += skipped
	r.Full += wireSize(im, im.Bundle, d.h.wire(), false)
	r.Resumed += dl.size - sent
	r.Loaded = append(r.Loaded, refs...)
	if r.Content == nil {
		r.Content = &content.Summary{}
	}
	r.Content.Add(dl.sum)
}

// carriesLayers reports whether b carries a layer.
func carriesLayers(b *archive.Bundle) bool {
	for _, l := range b.LayerOrder() {
		if l.Present() {
			return true
		}
	}
	return false
}

// A madeDelta is a content delta staged in a file, named by its digest.
type madeDelta struct {
	f      *os.File
	size   int64
	digest string // sha256, hex
	sum    content.Summary
}

// makeDelta stages a content delta of b, whose blobs src serves, against x in tempDir. Its
// images go in one order, whatever order the source gave them in (docker save follows no
// order): the same images against the same index make the same delta, which a cut send's
// next send resumes.
func makeDelta(ctx context.Context, src archive.BlobSource, b *archive.Bundle, x *content.Index, tempDir string) (*madeDelta, error) {
	sorted := *b
	sorted.Images = slices.SortedFunc(slices.Values(b.Images), func(a, b *archive.Image) int {
		return cmp.Or(slices.Compare(a.RepoTags, b.RepoTags), strings.Compare(a.ID().String(), b.ID().String()))
	})
	b = &sorted
	leftover.Clean(tempDir, "ferry-send-delta-") // a killed run's
	f, err := os.CreateTemp(tempDir, leftover.Pattern("ferry-send-delta-"))
	if err != nil {
		return nil, err
	}
	dl := &madeDelta{f: f}
	h := sha256.New()
	sum, err := content.Make(ctx, io.MultiWriter(f, h), b, src, x, tempDir)
	if err == nil {
		dl.size, err = f.Seek(0, io.SeekCurrent)
	}
	if err != nil {
		dl.remove()
		return nil, fmt.Errorf("making a content delta: %w", err)
	}
	dl.digest, dl.sum = hex.EncodeToString(h.Sum(nil)), *sum
	return dl, nil
}

func (dl *madeDelta) remove() {
	dl.f.Close()
	os.Remove(dl.f.Name())
}

package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/leftover"
	"github.com/ferrytool/ferry/store"
)

// Layers compressed for stores that unpack them. A docker save, and most bundles, carry
// layers uncompressed; a store that keeps layers as blobs and unpacks them (containerd, and
// docker on the containerd image store through its containerd) takes them gzip-compressed
// all the same, for about a third of the bytes on the link. Each such layer is compressed
// once for every host, as ferry compresses (archive.Pack: the same layer gives the same
// blob, so a host that holds it, or a cut ingest of it, is found by its digest), into a
// temporary file, ahead of the hosts sending them; the manifests are rewritten to name the
// compressed blobs (archive.Bundle.Repack).

// A packer compresses the layers of one source's images, each once, one at a time (the
// compressor takes every core), into files of a temporary directory removed on Close.
type packer struct {
	ctx    context.Context
	cancel context.CancelFunc
	parent string // where the directory goes: "" for the system's temp dir
	sem    chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	dir    string
	layers map[v1.Hash]*packing // by the uncompressed layer's digest
}

// A packing is a layer being compressed: path and desc, or err, once done is closed.
type packing struct {
	layer *archive.Layer
	done  chan struct{}
	path  string
	desc  v1.Descriptor
	err   error
}

func newPacker(ctx context.Context, parent string) *packer {
	ctx, cancel := context.WithCancel(ctx)
	return &packer{ctx: ctx, cancel: cancel, parent: parent, sem: make(chan struct{}, 1), layers: map[v1.Hash]*packing{}}
}

// start returns the compression of layer l, whose blob src serves, starting it unless it
// was: layers are compressed one at a time, in the order started.
func (p *packer) start(src archive.BlobSource, l *archive.Layer) *packing {
	p.mu.Lock()
	defer p.mu.Unlock()
	pk := p.layers[l.Digest]
	if pk == nil {
		pk = &packing{layer: l, done: make(chan struct{})}
		p.layers[l.Digest] = pk
		p.wg.Go(func() { p.pack(src, pk) })
	}
	return pk
}

// pack compresses one layer into a file.
func (p *packer) pack(src archive.BlobSource, pk *packing) {
	defer close(pk.done)
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-p.ctx.Done():
		pk.err = context.Cause(p.ctx)
		return
	}
	dir, err := p.tempDir()
	if err != nil {
		pk.err = err
		return
	}
	f, err := os.CreateTemp(dir, "layer-")
	if err != nil {
		pk.err = err
		return
	}
	l := pk.layer
	rc, err := src.Open(p.ctx, l.Blob)
	var packed archive.Packed
	if err == nil {
		packed, err = archive.Pack(f, archive.ContextReader(p.ctx, io.LimitReader(rc, l.Size)), compress.DefaultLevel)
		rc.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && packed.Raw != l.Digest {
		err = fmt.Errorf("%w: content hashes to %s", archive.ErrDigestMismatch, packed.Raw)
	}
	if err != nil {
		os.Remove(f.Name())
		pk.err = err
		return
	}
	pk.path = f.Name()
	pk.desc = v1.Descriptor{MediaType: archive.GzipType(l.MediaType), Digest: packed.Digest, Size: packed.Size}
}

// tempDir makes the packer's directory, once.
func (p *packer) tempDir() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir != "" {
		return p.dir, nil
	}
	leftover.Clean(p.parent, "ferry-pack-") // a killed run's
	dir, err := os.MkdirTemp(p.parent, leftover.Pattern("ferry-pack-"))
	if err != nil {
		return "", err
	}
	p.dir = dir
	return dir, nil
}

// Close stops what is being compressed and removes the files.
func (p *packer) Close() error {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dir == "" {
		return nil
	}
	return os.RemoveAll(p.dir)
}

// packed sends a store that unpacks layers (store.Unpacker) what it lacks of a source's
// images, their uncompressed layers compressed, each as soon as the source has it: as a
// docker save is read (the spool's layers), or at once from images read whole. A layer the
// store holds is sent nothing for: the manifests name the blob it holds the layer in
// (LayerBlobs), gzip-compressed or not, or, when it holds the layer only unpacked, the layer
// as it is. The others are compressed in the order they come (one at a time: the compressor
// takes every core; the source's packer compresses each once for every host) and each goes
// once compressed, the next compressed while one travels; then, once the source is read,
// the configs and the rewritten manifests, and the store commits.
type packed struct {
	h *host
	u store.Unpacker
}

func (d *packed) send(ctx context.Context, p *pending) error {
	h := d.h
	ls, _, err := p.layers(ctx)
	if err != nil {
		return err
	}
	need, held, err := d.lacking(ctx, ls)
	if err != nil {
		return err
	}
	r, err := h.receive(ctx, ls.total*int64(len(need))/int64(max(ls.count(), 1)))
	if err != nil {
		return err
	}
	named, fed, err := d.feedLayers(ctx, p, ls, need, r)
	if err != nil {
		return r.fail(err)
	}
	im, err := p.wait(ctx)
	if err != nil {
		return r.fail(err)
	}
	b, err := h.lacks(im)
	if b == nil {
		r.rcv.Abort(errors.New("nothing to send"))
		return err
	}
	for _, l := range b.LayerOrder() {
		if _, ok := held[l.DiffID]; ok && l.Present() && archive.GzipType(l.MediaType) != "" {
			h.res.Skipped++ // held, though not as the bundle carries it
		}
	}
	maps.Copy(named, held)
	rb, err := b.Repack(func(l *archive.Layer) (v1.Descriptor, bool) {
		d, ok := named[l.DiffID]
		d.MediaType = archive.GzipType(l.MediaType)
		return d, ok && d.MediaType != ""
	})
	if err != nil {
		return r.fail(err)
	}
	for _, blob := range rb.Reachable() {
		h.res.Full += blob.Size
	}
	// The layers are in the store now, or were: only configs and manifests are left.
	rb = rb.LeaveOut(func(blob *archive.Blob) bool { return fed[blob.Digest] || h.inv.HasBlob(blob.Digest) })
	return r.finish(rb, archive.Feed(ctx, rb, im.Src, r.sink))
}

// lacking returns the layers (diffIDs) of ls's images the store lacks, in the images' order,
// each once, and the gzip-compressed blobs it holds other layers in, by diffID (LayerBlobs).
func (d *packed) lacking(ctx context.Context, ls *layerSource) ([]v1.Hash, map[v1.Hash]v1.Descriptor, error) {
	var all, lacked []v1.Hash
	for _, diffIDs := range ls.images {
		img := imageOf(diffIDs)
		for k, diffID := range diffIDs {
			if !slices.Contains(all, diffID) {
				all = append(all, diffID)
			}
			if !d.h.inv.Has(img, k) && !slices.Contains(lacked, diffID) {
				lacked = append(lacked, diffID)
			}
		}
	}
	blobs, err := d.u.LayerBlobs(ctx, all)
	if err != nil {
		return nil, nil, err
	}
	held := map[v1.Hash]v1.Descriptor{}
	for diffID, b := range blobs {
		if b.Gzip {
			held[diffID] = v1.Descriptor{Digest: b.Digest, Size: b.Size}
		}
	}
	need := slices.DeleteFunc(lacked, func(diffID v1.Hash) bool { _, ok := held[diffID]; return ok })
	return need, held, nil
}

// feedLayers feeds the store the layers need names (diffIDs), each as soon as the source
// has it, an uncompressed one compressed, in the order they are ready. It returns the blobs
// the uncompressed layers were compressed into, by diffID, and the digests fed.
func (d *packed) feedLayers(ctx context.Context, p *pending, ls *layerSource, need []v1.Hash, r *receipt) (map[v1.Hash]v1.Descriptor, map[v1.Hash]bool, error) {
	h := d.h
	type ready struct {
		diffID v1.Hash
		l      *archive.Layer // nil: the source leaves it out
		pk     *packing       // its compression, if it is compressed
		err    error
	}
	out := make(chan ready, len(need))
	for _, diffID := range need {
		go func() {
			rd := ready{diffID: diffID}
			rd.l, rd.err = ls.layer(ctx, diffID)
			if rd.err == nil && rd.l != nil && rd.l.Digest == diffID && !h.inv.HasBlob(diffID) {
				rd.pk = p.pack.start(ls.src, rd.l)
				_, rd.err = rd.pk.wait(ctx)
			}
			out <- rd
		}()
	}
	named, fed := map[v1.Hash]v1.Descriptor{}, map[v1.Hash]bool{}
	for range need {
		var rd ready
		select {
		case rd = <-out:
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
		l := rd.l
		switch {
		case rd.err != nil:
			return nil, nil, fmt.Errorf("layer %s: %w", rd.diffID, rd.err)
		case l == nil || h.inv.HasBlob(l.Digest):
			continue // left out, or held
		}
		blob, src := l.Blob, ls.src
		if rd.pk != nil {
			desc := rd.pk.desc
			named[l.DiffID] = desc
			r.total += desc.Size - l.Size
			if h.inv.HasBlob(desc.Digest) { // held, though not labelled as the layer's
				h.res.Skipped++
				r.total -= desc.Size
				continue
			}
			blob, src = &archive.Blob{Digest: desc.Digest, Size: desc.Size}, fileSource(rd.pk.path)
		}
		if err := archive.FeedBlobs(ctx, []*archive.Blob{blob}, src, r.sink); err != nil {
			return nil, nil, err
		}
		fed[blob.Digest] = true
	}
	return named, fed, nil
}

// wait waits for the layer's compression, and returns the blob it made.
func (pk *packing) wait(ctx context.Context) (v1.Descriptor, error) {
	select {
	case <-pk.done:
		return pk.desc, pk.err
	case <-ctx.Done():
		return v1.Descriptor{}, context.Cause(ctx)
	}
}

// fileSource serves a blob from a file.
type fileSource string

func (f fileSource) Open(context.Context, *archive.Blob) (io.ReadCloser, error) {
	return os.Open(string(f))
}

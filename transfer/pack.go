package transfer

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
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

// ahead returns the compressions of layers, in their order, starting those not started
// yet: a goroutine compresses them one after another while the caller sends the first.
func (p *packer) ahead(src archive.BlobSource, layers []*archive.Layer) []*packing {
	out := make([]*packing, len(layers))
	var mine []*packing
	p.mu.Lock()
	for i, l := range layers {
		pk := p.layers[l.Digest]
		if pk == nil {
			pk = &packing{layer: l, done: make(chan struct{})}
			p.layers[l.Digest] = pk
			mine = append(mine, pk)
		}
		out[i] = pk
	}
	p.mu.Unlock()
	if len(mine) > 0 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for _, pk := range mine {
				p.pack(src, pk)
			}
		}()
	}
	return out
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
		packed, err = archive.Pack(f, archive.ContextReader(p.ctx, io.LimitReader(rc, l.Size)), archive.DefaultLevel)
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

// uncompressed returns the layers of b whose media type says uncompressed tar, once each.
func uncompressed(b *archive.Bundle) []*archive.Layer {
	var out []*archive.Layer
	for _, l := range layerOrder(b) {
		if archive.GzipType(l.MediaType) != "" {
			out = append(out, l)
		}
	}
	return out
}

// packed sends a store that unpacks layers (store.Unpacker) what it lacks of a source's
// images, their uncompressed layers compressed. A layer the store holds is sent nothing
// for: the manifests name the blob it holds the layer in (LayerBlobs), gzip-compressed or
// not, or, when it holds the layer only unpacked, the layer as it is. The others go in the
// images' order, each compressed one as soon as the source's packer has it ready (the next
// is compressed while one travels); then the configs and the rewritten manifests, and the
// store commits.
type packed struct {
	h *host
	u store.Unpacker
}

func (d *packed) send(ctx context.Context, p *pending) error {
	h := d.h
	im, err := p.wait(ctx)
	if err != nil {
		return err
	}
	b, err := h.lacks(im)
	if b == nil {
		return err
	}
	raw := uncompressed(b)
	if len(raw) == 0 {
		return h.receiveBlobs(ctx, im, b)
	}
	var diffIDs []v1.Hash
	for _, l := range raw {
		diffIDs = append(diffIDs, l.DiffID)
	}
	held, err := d.u.LayerBlobs(ctx, diffIDs)
	if err != nil {
		return err
	}
	// What the manifests name instead of an uncompressed layer, by its digest.
	named := map[v1.Hash]v1.Descriptor{}
	var pack []*archive.Layer
	var total int64 // an estimate, made good as the layers are compressed
	for _, blob := range b.LeaveOut(func(blob *archive.Blob) bool { return h.inv.HasBlob(blob.Digest) }).Reachable() {
		if blob.Present() {
			total += blob.Size
		}
	}
	for _, l := range raw {
		switch hb, ok := held[l.DiffID]; {
		case ok && hb.Gzip:
			named[l.Digest] = v1.Descriptor{MediaType: archive.GzipType(l.MediaType), Digest: hb.Digest, Size: hb.Size}
			if l.Present() { // held, though not as the bundle carries it
				h.res.Skipped++
				total -= l.Size
			}
		case l.Present() && !h.inv.HasBlob(l.Digest):
			pack = append(pack, l)
		}
	}
	packing := map[v1.Hash]*packing{}
	for i, c := range p.pack.ahead(im.Src, pack) {
		packing[pack[i].Digest] = c
	}

	r, err := h.receive(ctx, total)
	if err != nil {
		return err
	}
	// The layers first, in the images' order (as Feed sends them), each compressed one as
	// soon as it is ready.
	fed := map[v1.Hash]bool{}
	for _, l := range layerOrder(b) {
		if !l.Present() || h.inv.HasBlob(l.Digest) || named[l.Digest].Digest != (v1.Hash{}) {
			continue // held
		}
		blob, src := l.Blob, im.Src
		if c := packing[l.Digest]; c != nil {
			desc, err := c.wait(ctx)
			if err != nil {
				return r.fail(fmt.Errorf("layer %s: %w", l.Digest, err))
			}
			named[l.Digest] = desc
			r.total += desc.Size - l.Size
			if h.inv.HasBlob(desc.Digest) { // held, though not labelled as the layer's
				h.res.Skipped++
				r.total -= desc.Size
				continue
			}
			blob, src = &archive.Blob{Digest: desc.Digest, Size: desc.Size}, fileSource(c.path)
		}
		if err := archive.FeedBlobs(ctx, []*archive.Blob{blob}, src, r.sink); err != nil {
			return r.fail(err)
		}
		fed[blob.Digest] = true
	}
	rb, err := b.Repack(func(l *archive.Layer) (v1.Descriptor, bool) {
		d, ok := named[l.Digest]
		return d, ok
	})
	if err != nil {
		return r.fail(err)
	}
	for _, blob := range rb.Reachable() {
		h.res.Full += blob.Size
	}
	// The layers are in the store now, or were: only configs and manifests are left.
	rb = rb.LeaveOut(func(blob *archive.Blob) bool { return fed[blob.Digest] || h.inv.HasBlob(blob.Digest) })
	return r.finish(archive.Feed(ctx, rb, im.Src, r.sink))
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

// layerOrder returns the layers of b's images, in order, each blob once.
func layerOrder(b *archive.Bundle) []*archive.Layer {
	var out []*archive.Layer
	seen := map[v1.Hash]bool{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// fileSource serves a blob from a file.
type fileSource string

func (f fileSource) Open(context.Context, *archive.Blob) (io.ReadCloser, error) {
	return os.Open(string(f))
}

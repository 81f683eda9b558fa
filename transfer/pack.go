package transfer

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
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

// deliverPacked sends a store that unpacks layers (u) what it lacks of im, b being im's
// bundle thinned by inv, its uncompressed layers compressed. A layer the store holds is
// sent nothing for: the manifests name the blob it holds the layer in (LayerBlobs),
// gzip-compressed or not, or, when it holds the layer only unpacked, the layer as it is.
// The others go in the images' order, each compressed one as soon as pk has it ready (the
// next is compressed while one travels); then the configs and the rewritten manifests, and
// the store commits.
func deliverPacked(ctx context.Context, res *HostResult, st store.Store, u store.Unpacker, inv *dedupe.Inventory, b *archive.Bundle,
	pk *packer, im *store.Images, progress func(sent, total int64)) error {
	raw := uncompressed(b)
	var diffIDs []v1.Hash
	for _, l := range raw {
		diffIDs = append(diffIDs, l.DiffID)
	}
	held, err := u.LayerBlobs(ctx, diffIDs)
	if err != nil {
		return err
	}
	// What the manifests name instead of an uncompressed layer, by its digest.
	named := map[v1.Hash]v1.Descriptor{}
	var pack []*archive.Layer
	var total int64 // an estimate, made good as the layers are compressed
	for _, blob := range b.LeaveOut(func(blob *archive.Blob) bool { return inv.HasBlob(blob.Digest) }).Reachable() {
		if blob.Present() {
			total += blob.Size
		}
	}
	for _, l := range raw {
		switch h, ok := held[l.DiffID]; {
		case ok && h.Gzip:
			named[l.Digest] = v1.Descriptor{MediaType: archive.GzipType(l.MediaType), Digest: h.Digest, Size: h.Size}
			if l.Present() { // held, though not as the bundle carries it
				res.Skipped++
				total -= l.Size
			}
		case l.Present() && !inv.HasBlob(l.Digest):
			pack = append(pack, l)
		}
	}
	packing := map[v1.Hash]*packing{}
	for i, c := range pk.ahead(im.Src, pack) {
		packing[pack[i].Digest] = c
	}

	rcv, err := st.Receive(ctx)
	if err != nil {
		return err
	}
	sent := res.Sent
	total += sent
	count := func(n int64) { res.Sent = sent + n }
	sink := &countingSink{Receiver: rcv, p: store.Progress{Report: func(n, _ int64) { count(n); progress(res.Sent, total) }}}
	finish := func(err error) error {
		if r, ok := rcv.(store.Resumer); ok { // what the store held of a blob was never sent
			count(sink.p.Done - r.Resumed())
		}
		if err != nil {
			return fmt.Errorf("%w; what %s took in whole stays there, and sending again sends only the rest", err, st)
		}
		return nil
	}
	// The layers first, in the images' order (as Feed sends them), each compressed one as
	// soon as it is ready.
	fed := map[v1.Hash]bool{}
	for _, l := range layerOrder(b) {
		if !l.Present() || inv.HasBlob(l.Digest) || named[l.Digest].Digest != (v1.Hash{}) {
			continue // held
		}
		blob, src := l.Blob, im.Src
		if c := packing[l.Digest]; c != nil {
			var err error
			select {
			case <-c.done:
				err = c.err
			case <-ctx.Done():
				err = context.Cause(ctx)
			}
			if err != nil {
				err = fmt.Errorf("layer %s: %w", l.Digest, err)
				rcv.Abort(err)
				return finish(err)
			}
			named[l.Digest] = c.desc
			total += c.desc.Size - l.Size
			if inv.HasBlob(c.desc.Digest) { // held, though not labelled as the layer's
				res.Skipped++
				total -= c.desc.Size
				continue
			}
			blob, src = &archive.Blob{Digest: c.desc.Digest, Size: c.desc.Size}, fileSource(c.path)
		}
		if err := archive.FeedBlobs(ctx, []*archive.Blob{blob}, src, sink); err != nil {
			rcv.Abort(err)
			return finish(err)
		}
		fed[blob.Digest] = true
	}
	rb, err := b.Repack(func(l *archive.Layer) (v1.Descriptor, bool) {
		d, ok := named[l.Digest]
		return d, ok
	})
	if err != nil {
		rcv.Abort(err)
		return finish(err)
	}
	for _, blob := range rb.Reachable() {
		res.Full += blob.Size
	}
	// The layers are in the store now, or were: only configs and manifests are left.
	rb = rb.LeaveOut(func(blob *archive.Blob) bool { return fed[blob.Digest] || inv.HasBlob(blob.Digest) })
	if err := finish(archive.Feed(ctx, rb, im.Src, sink)); err != nil {
		return err
	}
	for _, l := range rcv.Loaded() {
		res.Loaded = append(res.Loaded, l.Ref)
	}
	return nil
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

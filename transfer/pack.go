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
		packed, err = archive.Pack(f, &ctxReader{ctx: p.ctx, r: io.LimitReader(rc, l.Size)}, archive.DefaultLevel)
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

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(b)
}

// uncompressed returns the layers of b whose media type says uncompressed tar, once each.
func uncompressed(b *archive.Bundle) []*archive.Layer {
	var out []*archive.Layer
	seen := map[v1.Hash]bool{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if archive.GzipType(l.MediaType) != "" && !seen[l.Digest] {
				seen[l.Digest] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// deliverPacked sends a store that unpacks layers (u) what it lacks of im, b being im's
// bundle thinned by inv, its uncompressed layers compressed. A layer the store holds is sent nothing for: the
// manifests name the blob it holds the layer in (LayerBlobs), gzip-compressed or not, or,
// when it holds the layer only unpacked, the layer as it is. The others are compressed (pk)
// and sent as they are ready, the next compressed while one travels; then the configs and
// the rewritten manifests, and the store commits.
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
	var send []*archive.Layer
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
			send = append(send, l)
		}
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
	for i, c := range pk.ahead(im.Src, send) {
		err := c.err
		select {
		case <-c.done:
			err = c.err
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
		if err == nil {
			named[send[i].Digest] = c.desc
			total += c.desc.Size - send[i].Size
			if inv.HasBlob(c.desc.Digest) { // held, though not labelled as the layer's
				res.Skipped++
				total -= c.desc.Size
				continue
			}
			err = sendFile(ctx, sink, c.path, c.desc)
		}
		if err != nil {
			err = fmt.Errorf("layer %s: %w", send[i].Digest, err)
			rcv.Abort(err)
			return finish(err)
		}
	}
	rb, err := b.Repack(func(l *archive.Layer) (v1.Descriptor, bool) {
		d, ok := named[l.Digest]
		return d, ok
	})
	if err != nil {
		rcv.Abort(err)
		return err
	}
	for _, blob := range rb.Reachable() {
		res.Full += blob.Size
	}
	packed := map[v1.Hash]bool{}
	for _, d := range named {
		packed[d.Digest] = true
	}
	// The compressed layers are in the store now, or were: only configs and manifests left.
	rb = rb.LeaveOut(func(blob *archive.Blob) bool { return packed[blob.Digest] || inv.HasBlob(blob.Digest) })
	if err := finish(archive.Feed(ctx, rb, im.Src, sink)); err != nil {
		return err
	}
	for _, l := range rcv.Loaded() {
		res.Loaded = append(res.Loaded, l.Ref)
	}
	return nil
}

// sendFile hands the compressed blob in file path to sink.
func sendFile(ctx context.Context, sink archive.Sink, path string, d v1.Descriptor) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return sink.Entry(ctx, archive.Entry{Name: "blobs/" + d.Digest.Algorithm + "/" + d.Digest.Hex, Size: d.Size, Listed: true}, f)
}

package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Feed hands a bundle that was never a tar — images added with AddImage, say — to a sink the
// way Read would: each present blob as an entry named blobs/sha256/<hex> (recorded in its
// Path), verified against its digest as it passes (by src, if it checks them), then Commit.
// Blobs go after the blobs they refer to (layers, configs, manifests, indexes), so a sink that
// keeps whole blobs from a cut transfer never holds a manifest without what it names. On
// failure it calls sink.Abort.
func Feed(ctx context.Context, b *Bundle, src BlobSource, sink Sink) error {
	fed := b.copyWith(func(blob *Blob) *Blob { // b stays as it is: feeds may run at once
		c := *blob
		if c.Present() {
			c.Path = blobPath(c.Digest)
		}
		return &c
	})
	err := feed(ctx, b, src, sink)
	if err == nil {
		err = sink.Commit(ctx, fed)
	}
	if err != nil {
		sink.Abort(err)
	}
	return err
}

func feed(ctx context.Context, b *Bundle, src BlobSource, sink Sink) error {
	return FeedBlobs(ctx, blobOrder(b), src, sink)
}

// FeedBlobs hands blobs to sink as Feed does, in their order, leaving out those missing:
// each as an entry named blobs/sha256/<hex>, verified against its digest as it passes, or,
// from a source that checks its blobs (a CheckedSource), read to its end, where that source
// fails one that is not what its digest says.
func FeedBlobs(ctx context.Context, blobs []*Blob, src BlobSource, sink Sink) error {
	checked := Checked(src)
	for _, blob := range blobs {
		if blob.Missing {
			continue
		}
		if err := feedBlob(ctx, blob, src, checked && blob.Data == nil, sink); err != nil {
			return err
		}
	}
	return nil
}

// feedBlob hands sink one blob, as FeedBlobs says.
func feedBlob(ctx context.Context, blob *Blob, src BlobSource, checked bool, sink Sink) error {
	var rc io.ReadCloser = io.NopCloser(bytes.NewReader(blob.Data))
	if blob.Data == nil {
		var err error
		if rc, err = src.Open(ctx, blob); err != nil {
			return fmt.Errorf("reading blob %s: %w", blob.Digest, err)
		}
	}
	defer rc.Close()
	body := &io.LimitedReader{R: rc, N: blob.Size}
	var r io.Reader = body
	h := sha256.New()
	if !checked {
		r = io.TeeReader(body, h)
	}
	err := sink.Entry(ctx, Entry{Name: blobPath(blob.Digest), Size: blob.Size, Listed: true}, r)
	switch {
	case err != nil:
	case checked:
		err = toEnd(body, rc)
	case HashOf(h) != blob.Digest:
		err = fmt.Errorf("%w: content hashes to %s", ErrDigestMismatch, HashOf(h))
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", blob.Digest, err)
	}
	return nil
}

// toEnd reads what body leaves of a blob, and then rc to its end, where a source that checks
// its blobs fails one that is not what its digest says.
func toEnd(body *io.LimitedReader, rc io.Reader) error {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	if body.N > 0 {
		return io.ErrUnexpectedEOF
	}
	var one [1]byte
	switch n, err := io.ReadFull(rc, one[:]); {
	case n > 0:
		return fmt.Errorf("%w: it runs past its size", ErrDigestMismatch)
	case err != io.EOF:
		return err
	}
	return nil
}

// blobOrder returns b's reachable blobs with the layers first (LayerOrder), then the
// configs, then artifacts' configs and layers, then the rest (manifests and indexes): a blob is written after the blobs it
// refers to.
func blobOrder(b *Bundle) []*Blob {
	var out []*Blob
	seen := map[v1.Hash]bool{}
	add := func(blob *Blob) {
		if !seen[blob.Digest] {
			seen[blob.Digest] = true
			out = append(out, blob)
		}
	}
	for _, l := range b.LayerOrder() {
		add(l.Blob)
	}
	for _, img := range b.Images {
		add(img.Config)
	}
	for _, a := range b.Artifacts {
		for _, blob := range a.Blobs {
			add(blob)
		}
	}
	var rest []*Blob
	for _, blob := range b.Reachable() {
		if !seen[blob.Digest] {
			rest = append(rest, blob)
		}
	}
	// An index refers to manifests: write manifests before indexes.
	for _, index := range []bool{false, true} {
		for _, blob := range rest {
			if isIndex(blob) == index {
				add(blob)
			}
		}
	}
	return out
}

// isIndex reports whether blob is an image index: it lists manifests.
func isIndex(blob *Blob) bool {
	var m struct {
		Manifests json.RawMessage `json:"manifests"`
	}
	if blob.Data == nil || json.Unmarshal(blob.Data, &m) != nil {
		return false
	}
	return m.Manifests != nil
}

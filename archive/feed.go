package archive

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
)

// Feed hands a bundle that was never a tar — images added with AddImage, say — to a sink the
// way Read would: each present blob not held in memory as an entry named blobs/sha256/<hex>
// (recorded in its Path), verified against its digest as it passes, then Commit. On failure it
// calls sink.Abort.
func Feed(ctx context.Context, b *Bundle, src BlobSource, sink Sink) error {
	err := feed(ctx, b, src, sink)
	if err == nil {
		err = sink.Commit(ctx, b)
	}
	if err != nil {
		sink.Abort(err)
	}
	return err
}

func feed(ctx context.Context, b *Bundle, src BlobSource, sink Sink) error {
	for _, blob := range b.Reachable() {
		if blob.Missing || blob.Data != nil {
			continue
		}
		rc, err := src.Open(ctx, blob)
		if err != nil {
			return fmt.Errorf("reading blob %s: %w", blob.Digest, err)
		}
		h := sha256.New()
		blob.Path = blobPath(blob.Digest)
		err = sink.Entry(ctx, Entry{Name: blob.Path, Size: blob.Size, Listed: true}, io.TeeReader(io.LimitReader(rc, blob.Size), h))
		rc.Close()
		if err != nil {
			return fmt.Errorf("blob %s: %w", blob.Digest, err)
		}
		if got := hashOf(h); got != blob.Digest {
			return fmt.Errorf("blob %s: %w: content hashes to %s", blob.Digest, ErrDigestMismatch, got)
		}
	}
	return nil
}

package archive

import (
	"archive/tar"
	"bufio"
	"io"
)

// A Forwarder writes a bundle to a docker-archive stream (docker load, podman load) as Read
// passes its entries: each data entry under its own name, then, at Finish, manifest.json
// naming the blobs where the entries put them. The loaders unpack their whole input before
// they register anything, so a stream that ends without manifest.json loads nothing: that is
// what makes a forwarded stream load whole or not at all. Writes are gathered into large
// ones: entries arrive in small pieces, and each write to an SSH channel or an HTTP upload is
// a packet or a chunk of its own.
type Forwarder struct {
	tw  *tar.Writer
	bw  *bufio.Writer
	buf []byte // for copying entries: readers fed through a pipe hand over what fits
}

// CopyBuffer is the size of the pieces streams are gathered into on their way to a store.
const CopyBuffer = 1 << 20

// NewForwarder forwards to w.
func NewForwarder(w io.Writer) *Forwarder {
	bw := bufio.NewWriterSize(w, CopyBuffer)
	return &Forwarder{tw: tar.NewWriter(bw), bw: bw, buf: make([]byte, CopyBuffer)}
}

// Entry forwards one data entry.
func (f *Forwarder) Entry(e Entry, r io.Reader) error {
	if err := f.tw.WriteHeader(&tar.Header{Name: e.Name, Size: e.Size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := io.CopyBuffer(f.tw, r, f.buf)
	return err
}

// Finish writes manifest.json for b, read and verified, and ends the tar stream. Blobs b
// leaves out are named where a bundle keeps them: the store has them.
func (f *Forwarder) Finish(b *Bundle) error {
	manifest, err := ManifestJSON(b.Images, func(blob *Blob) string {
		if blob.Path != "" {
			return blob.Path
		}
		return blobPath(blob.Digest)
	})
	if err != nil {
		return err
	}
	if err := f.tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: int64(len(manifest)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := f.tw.Write(manifest); err != nil {
		return err
	}
	if err := f.tw.Close(); err != nil {
		return err
	}
	return f.bw.Flush()
}

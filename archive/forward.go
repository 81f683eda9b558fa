package archive

import (
	"archive/tar"
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"os"
)

// A Forwarder writes a bundle to a docker-archive stream (docker load, podman load) as Read
// passes its entries, under names of its own: an entry Read passes as Listed goes on at once,
// any other is held back in one temporary file until Finish, which sends only those the
// verified bundle uses, then manifest.json naming the blobs where they went. Nothing the
// bundle does not use, and no name from it, reaches the loader. The loaders unpack their whole
// input before they register anything, so a stream that ends without manifest.json loads
// nothing: that is what makes a forwarded stream load whole or not at all. Writes are gathered
// into large ones: entries arrive in small pieces, and each write to an SSH channel or an HTTP
// upload is a packet or a chunk of its own.
type Forwarder struct {
	tw   *tar.Writer
	bw   *bufio.Writer
	buf  []byte            // for copying entries: readers fed through a pipe hand over what fits
	sent map[string]string // entry name → its name in the stream
	held *os.File          // entries held back (see WriteHeld)
	hw   *bufio.Writer     // to held
	id   string            // names this stream's entries
}

// CopyBuffer is the size of the pieces streams are gathered into on their way to a store.
const CopyBuffer = 1 << 20

// NewForwarder forwards to w.
func NewForwarder(w io.Writer) *Forwarder {
	bw := bufio.NewWriterSize(w, CopyBuffer)
	id := make([]byte, 8)
	rand.Read(id)
	return &Forwarder{tw: tar.NewWriter(bw), bw: bw, buf: make([]byte, CopyBuffer),
		sent: map[string]string{}, id: hex.EncodeToString(id)}
}

// Entry forwards one data entry, or holds it back when it is not Listed.
func (f *Forwarder) Entry(e Entry, r io.Reader) error {
	if e.Listed {
		return f.send(e.Name, e.Size, r)
	}
	if f.held == nil {
		var err error
		if f.held, err = heldFile(); err != nil {
			return err
		}
		f.hw = bufio.NewWriterSize(f.held, 64<<10)
	}
	return WriteHeld(f.hw, e, r, f.buf)
}

// send writes an entry to the stream under a name of the forwarder's.
func (f *Forwarder) send(name string, size int64, r io.Reader) error {
	// Names unique to the stream: docker's containerd image store ingests each entry under a
	// ref made of its name and resumes a ref an aborted load left, so a name reused by the next
	// stream would join another stream's bytes ("unexpected commit size").
	f.sent[name] = fmt.Sprintf("ferry-%s/%d", f.id, len(f.sent))
	if err := f.tw.WriteHeader(&tar.Header{Name: f.sent[name], Size: size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := io.CopyBuffer(f.tw, r, f.buf)
	return err
}

// Finish sends the held-back entries b uses, then manifest.json for b, read and verified, and
// ends the tar stream. Blobs b leaves out are named where a bundle keeps them: the store has
// them.
func (f *Forwarder) Finish(b *Bundle) error {
	defer f.Close()
	want := map[NameKey]*Blob{}
	for _, img := range b.Images {
		for _, blob := range append([]*Blob{img.Config}, layerBlobs(img)...) {
			if _, done := f.sent[entryName(blob)]; !done && !blob.Missing {
				want[KeyOf(entryName(blob))] = blob
			}
		}
	}
	if f.held != nil && len(want) > 0 {
		if err := f.hw.Flush(); err != nil {
			return err
		}
		err := ScanHeld(io.NewSectionReader(f.held, 0, math.MaxInt64), want, func(blob *Blob, size int64, body io.Reader) error {
			return f.send(entryName(blob), size, body)
		})
		if err != nil {
			return err
		}
	}
	for _, blob := range want {
		return fmt.Errorf("%w: %s was not forwarded", ErrMissingBlob, blob)
	}
	manifest, err := ManifestJSON(b.Images, func(blob *Blob) string {
		if blob.Missing {
			return blobPath(blob.Digest)
		}
		return f.sent[entryName(blob)]
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

// Close drops what was held back; Finish does it too.
func (f *Forwarder) Close() {
	if f.held != nil {
		f.held.Close()
		f.held = nil
	}
}

// entryName is the entry a blob came as: its path in the bundle read, or where Feed put it.
func entryName(b *Blob) string {
	if b.Path != "" {
		return b.Path
	}
	return blobPath(b.Digest)
}

func layerBlobs(img *Image) []*Blob {
	out := make([]*Blob, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.Blob
	}
	return out
}

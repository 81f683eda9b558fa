package store

import (
	"context"
	"io"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/archive/spool"
)

// Images are images read from a store once, ready to be written as bundles — whole or
// thinned for a destination — any number of times, concurrently.
type Images struct {
	// Bundle describes the images; every blob is present.
	Bundle *archive.Bundle
	// Src serves the blobs.
	Src   archive.BlobSource
	close func() error
}

// NewImages makes Images of b whose blobs src serves; closing them calls close, if set.
func NewImages(b *archive.Bundle, src archive.BlobSource, close func() error) *Images {
	if close == nil {
		close = func() error { return nil }
	}
	return &Images{Bundle: b, Src: src, close: close}
}

// Spooled reads a bundle into a spool encoded for opts.Write with read, which streams it
// into the sink it is given: a source whose metadata comes last becomes Images that write
// metadata first.
func Spooled(opts ReadOptions, read func(sink archive.Sink) (*archive.Bundle, error)) (*Images, error) {
	sp, err := spool.New(opts.TempDir, opts.Write)
	if err != nil {
		return nil, err
	}
	b, err := read(sp)
	if err != nil {
		return nil, err // read aborted the spool
	}
	return NewImages(b, sp, sp.Close), nil
}

// Write writes b, which is im.Bundle or a thinned copy of it (archive.Bundle.Thin), to w.
func (im *Images) Write(ctx context.Context, w io.Writer, b *archive.Bundle, opts archive.WriteOptions) error {
	return archive.Write(ctx, w, b, im.Src, opts)
}

// Close releases what reading the images staged.
func (im *Images) Close() error { return im.close() }

// Counted reports the bytes of the blobs im serves as they are read, against the total of
// their sizes.
func (im *Images) Counted(report func(done, total int64)) *Images {
	if report == nil {
		return im
	}
	var total int64
	for _, blob := range im.Bundle.Reachable() {
		total += blob.Size
	}
	p := &Progress{Total: total, Report: report}
	return &Images{Bundle: im.Bundle, Src: progressSource{im.Src, p}, close: im.close}
}

// Progress counts bytes read through its readers and reports them against Total, an
// estimate: when more is done, the total reported is what is done.
type Progress struct {
	Done, Total int64
	Report      func(done, total int64)
}

// Reader counts what is read from r.
func (p *Progress) Reader(r io.Reader) io.Reader {
	if p.Report == nil {
		return r
	}
	return &progressReader{r, p}
}

type progressReader struct {
	r io.Reader
	p *Progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.Done += int64(n)
	total := r.p.Total
	if total > 0 {
		total = max(total, r.p.Done)
	}
	r.p.Report(r.p.Done, total)
	return n, err
}

// progressSource reports the bytes of the blobs it serves as they are read.
type progressSource struct {
	archive.BlobSource
	p *Progress
}

func (s progressSource) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	rc, err := s.BlobSource.Open(ctx, b)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{s.p.Reader(rc), rc}, nil
}

package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/leftover"
)

// A Spool is an archive.Sink that stages a bundle's data entries in a temporary directory,
// already encoded for the bundle archive.Write will make of them, and serves them back as an
// archive.EncodedSource; as an archive.EncodedRecorder, it keeps what Write made of the rest.
// It is how a stream whose metadata comes last (docker save) becomes a bundle whose metadata
// comes first without compressing anything twice. An entry can be opened once its staging
// has begun (Entry stages it before it reads its first byte), and reads follow its staging.
type Spool struct {
	dir   string
	codec compress.Codec
	level int

	mu    sync.Mutex
	files map[string]*staged // by entry name
	// What Write made of the blobs it encoded from the staged content, for one codec and
	// level (the first it used): by entry name, and in all.
	wrote      map[string]int64
	wroteAs    archive.Encoding
	raw, coded int64
}

// The archive interfaces a Spool implements; Write finds the last two by type assertion.
var (
	_ archive.Sink            = (*Spool)(nil)
	_ archive.BlobSource      = (*Spool)(nil)
	_ archive.EncodedSource   = (*Spool)(nil)
	_ archive.EncodedRecorder = (*Spool)(nil)
)

// New makes a spool in a new directory under parent ("" for the system temp dir), encoding
// for opts.
func New(parent string, opts archive.WriteOptions) (*Spool, error) {
	leftover.Clean(parent, "ferry-spool-") // a killed run's
	dir, err := os.MkdirTemp(parent, leftover.Pattern("ferry-spool-"))
	if err != nil {
		return nil, err
	}
	return &Spool{dir: dir, codec: opts.Codec, level: opts.EffectiveLevel(), files: map[string]*staged{}}, nil
}

// A staged entry: a file, and how far its staging has come.
type staged struct {
	name string
	mu   sync.Mutex
	n    int64         // the bytes in the file so far
	done bool          // staged whole, or failed (err)
	err  error         // why staging failed
	more chan struct{} // closed, and replaced, as bytes come and at the end
}

// wrote counts what went into the file, and wakes its readers.
func (st *staged) wrote(n int, done bool, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return // how the staging ended is final
	}
	st.n += int64(n)
	st.done, st.err = done, err
	close(st.more)
	st.more = make(chan struct{})
}

// Entry stages one entry.
func (s *Spool) Entry(ctx context.Context, e archive.Entry, r io.Reader) error {
	f, err := os.CreateTemp(s.dir, "blob-")
	if err != nil {
		return err
	}
	st := &staged{name: f.Name(), more: make(chan struct{})}
	s.mu.Lock()
	s.files[e.Name] = st
	s.mu.Unlock()
	err = archive.EncodeBody(stagingWriter{f, st}, r, e.Size, compress.Encoder{Codec: s.codec, Level: s.level})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		err = fmt.Errorf("spooling %s: %w", e.Name, err)
	}
	st.wrote(0, true, err)
	return err
}

// stagingWriter writes an entry's file and tells its readers.
type stagingWriter struct {
	f  *os.File
	st *staged
}

func (w stagingWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.st.wrote(n, false, nil)
	return n, err
}

// Commit keeps what was staged for Write.
func (s *Spool) Commit(context.Context, *archive.Bundle) error { return nil }

// Abort removes what was staged.
func (s *Spool) Abort(error) { s.Close() }

// Close removes the spool's directory.
func (s *Spool) Close() error { return os.RemoveAll(s.dir) }

// OpenEncoded returns a blob's staged body when it was encoded as asked (level 0: at any
// level), once staged whole: Write copies it as it is, unchecked, where what Open gives is
// checked against the blob's digest as it is read.
func (s *Spool) OpenEncoded(ctx context.Context, b *archive.Blob, codec compress.Codec, level int) (io.ReadCloser, bool, error) {
	if !s.encodedAs(codec, level) {
		return nil, false, nil
	}
	f, err := s.open(ctx, b)
	if err == nil {
		if err = f.whole(); err != nil {
			f.Close()
		}
	}
	return f, err == nil, err
}

// EncodedSize returns the bytes Write gives for a blob's body encoded as opts ask, when it
// knows them: it was staged so, or Write has written it so before.
func (s *Spool) EncodedSize(b *archive.Blob, opts archive.WriteOptions) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.files[b.Path]
	if !ok {
		return 0, false
	}
	if s.encodedAs(opts.Codec, opts.CopiedLevel()) {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.n, st.done && st.err == nil
	}
	n, ok := s.wrote[b.Path]
	return n, ok && s.wroteAs == opts.Encoding()
}

// EncodedRatio returns the ratio of encoded to staged bytes of the blobs Write has encoded
// as opts ask, if it has.
func (s *Spool) EncodedRatio(opts archive.WriteOptions) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == 0 || s.wroteAs != opts.Encoding() {
		return 0, false
	}
	return float64(s.coded) / float64(s.raw), true
}

// Encoded keeps what Write made of a blob it encoded from the staged content, for the first
// encoding it used.
func (s *Spool) Encoded(b *archive.Blob, as archive.Encoding, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote == nil {
		s.wrote, s.wroteAs = map[string]int64{}, as
	}
	if s.wroteAs == as {
		s.wrote[b.Path] = size
		s.raw += b.Size + archive.Padding(b.Size)
		s.coded += size
	}
}

func (s *Spool) encodedAs(codec compress.Codec, level int) bool {
	return codec == s.codec && (codec == compress.None || level == 0 || level == s.level)
}

// Checked reports that what s serves was checked as it was staged: the read that stages a
// spool hashes every entry, and checks every blob and layer against its digest before it
// hands out the bundle (a content delta's maker need not hash the layers again).
func (s *Spool) Checked() bool { return true }

// Open returns a blob's content.
func (s *Spool) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	f, err := s.open(ctx, b)
	if err != nil {
		return nil, err
	}
	if s.codec == compress.None {
		return &plain{following: f, r: io.LimitReader(f, b.Size), size: b.Size}, nil
	}
	zr, _, err := compress.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(zr, b.Size), closeBoth{zr, f}}, nil
}

// plain is a blob staged as it is: read in order, or at any offset (a content rebuild reads
// a layer in place), as far as its staging has come.
type plain struct {
	*following
	r    io.Reader
	size int64
}

func (p *plain) Read(b []byte) (int, error) { return p.r.Read(b) }

func (p *plain) ReadAt(b []byte, off int64) (int, error) {
	if off >= p.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(b)), p.size)
	n, err := p.st.await(p.ctx, func(n int64, done bool) bool { return n >= end || done })
	if err != nil {
		return 0, err
	}
	m, err := p.f.ReadAt(b[:max(0, min(end, n)-off)], off)
	if err == nil && m < len(b) {
		err = io.EOF
	}
	return m, err
}

// closeBoth closes a decoder and the file under it.
type closeBoth [2]io.Closer

func (c closeBoth) Close() error { return errors.Join(c[0].Close(), c[1].Close()) }

// open returns a reader of b's staged file that follows its staging.
func (s *Spool) open(ctx context.Context, b *archive.Blob) (*following, error) {
	s.mu.Lock()
	st := s.files[b.Path]
	s.mu.Unlock()
	if st == nil {
		return nil, fmt.Errorf("%w: %s was not spooled", archive.ErrMissingBlob, b)
	}
	f, err := os.Open(st.name)
	if err != nil {
		return nil, err
	}
	return &following{ctx: ctx, f: f, st: st}, nil
}

// following reads a staged file as far as its staging has come, and waits for more.
type following struct {
	ctx context.Context
	f   *os.File
	st  *staged
	off int64
}

func (r *following) Read(p []byte) (int, error) {
	n, err := r.st.await(r.ctx, func(n int64, done bool) bool { return r.off < n || done })
	switch {
	case r.off < n:
		m, err := r.f.Read(p[:min(int64(len(p)), n-r.off)])
		r.off += int64(m)
		return m, err
	case err != nil:
		return 0, err
	}
	return 0, io.EOF
}

func (r *following) Close() error { return r.f.Close() }

// whole waits for the file to be staged whole.
func (r *following) whole() error {
	_, err := r.st.await(r.ctx, func(_ int64, done bool) bool { return done })
	return err
}

// await returns how far the staging has come once ready says so, or it failed.
func (st *staged) await(ctx context.Context, ready func(n int64, done bool) bool) (int64, error) {
	for {
		st.mu.Lock()
		n, done, err, more := st.n, st.done, st.err, st.more
		st.mu.Unlock()
		if err != nil || ready(n, done) {
			return n, err
		}
		select {
		case <-more:
		case <-ctx.Done():
			return n, context.Cause(ctx)
		}
	}
}

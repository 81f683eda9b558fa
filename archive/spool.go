package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/ferrytool/ferry/internal/leftover"
)

// A Spool is a Sink that stages a bundle's data entries in a temporary directory, already
// encoded for the bundle Write will make of them, and serves them back as an EncodedSource.
// It is how a stream whose metadata comes last (docker save) becomes a bundle whose metadata
// comes first without compressing anything twice.
type Spool struct {
	dir   string
	codec Codec
	level int

	mu    sync.Mutex
	files map[string]string // entry name → staged file
	// What Write made of the blobs it encoded from the staged content, for one codec and
	// level (the first it used): by entry name, and in all.
	wrote      map[string]int64
	wroteAs    encoding
	raw, coded int64
}

// NewSpool makes a spool in a new directory under parent ("" for the system temp dir),
// encoding for opts.
func NewSpool(parent string, opts WriteOptions) (*Spool, error) {
	leftover.Clean(parent, "ferry-spool-") // a killed run's
	dir, err := os.MkdirTemp(parent, leftover.Pattern("ferry-spool-"))
	if err != nil {
		return nil, err
	}
	return &Spool{dir: dir, codec: opts.Codec, level: opts.level(), files: map[string]string{}}, nil
}

// Entry stages one entry.
func (s *Spool) Entry(ctx context.Context, e Entry, r io.Reader) error {
	f, err := os.CreateTemp(s.dir, "blob-")
	if err != nil {
		return err
	}
	err = encodeBody(f, r, e.Size, encoder{codec: s.codec, level: s.level})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.files[e.Name] = f.Name()
	s.mu.Unlock()
	return nil
}

// Commit keeps what was staged for Write.
func (s *Spool) Commit(context.Context, *Bundle) error { return nil }

// Abort removes what was staged.
func (s *Spool) Abort(error) { s.Close() }

// Close removes the spool's directory.
func (s *Spool) Close() error { return os.RemoveAll(s.dir) }

// OpenEncoded returns a blob's staged body when it was encoded as asked (level 0: at any level).
func (s *Spool) OpenEncoded(_ context.Context, b *Blob, codec Codec, level int) (io.ReadCloser, bool, error) {
	if !s.encodedAs(codec, level) {
		return nil, false, nil
	}
	f, err := s.open(b)
	return f, err == nil, err
}

// EncodedSize returns the bytes Write gives for a blob's body encoded as opts ask, when it
// knows them: it was staged so, or Write has written it so before.
func (s *Spool) EncodedSize(b *Blob, opts WriteOptions) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name, ok := s.files[b.Path]
	if !ok {
		return 0, false
	}
	if s.encodedAs(opts.Codec, opts.copied()) {
		st, err := os.Stat(name)
		if err != nil {
			return 0, false
		}
		return st.Size(), true
	}
	n, ok := s.wrote[b.Path]
	return n, ok && s.wroteAs == opts.encoding()
}


// EncodedRatio returns the ratio of encoded to staged bytes of the blobs Write has encoded
// as opts ask, if it has.
func (s *Spool) EncodedRatio(opts WriteOptions) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == 0 || s.wroteAs != opts.encoding() {
		return 0, false
	}
	return float64(s.coded) / float64(s.raw), true
}

func (s *Spool) encoded(b *Blob, as encoding, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wrote == nil {
		s.wrote, s.wroteAs = map[string]int64{}, as
	}
	if s.wroteAs == as {
		s.wrote[b.Path] = size
		s.raw += b.Size + padding(b.Size)
		s.coded += size
	}
}

func (s *Spool) encodedAs(codec Codec, level int) bool {
	return codec == s.codec && (codec == None || level == 0 || level == s.level)
}

// Open returns a blob's content.
func (s *Spool) Open(_ context.Context, b *Blob) (io.ReadCloser, error) {
	f, err := s.open(b)
	if err != nil {
		return nil, err
	}
	if s.codec == None {
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(f, b.Size), f}, nil
	}
	zr, _, err := decompress(f, false)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(zr, b.Size), closeBoth{zr, f}}, nil
}

// closeBoth closes a decoder and the file under it.
type closeBoth [2]io.Closer

func (c closeBoth) Close() error { return errors.Join(c[0].Close(), c[1].Close()) }

func (s *Spool) open(b *Blob) (*os.File, error) {
	s.mu.Lock()
	name, ok := s.files[b.Path]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s was not spooled", ErrMissingBlob, b)
	}
	return os.Open(name)
}

package compress

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Codec is a whole-stream compression: a bundle's outer compression or a layer blob's.
type Codec int

// The codecs ferry reads; it writes None, Gzip and Zstd.
const (
	None Codec = iota
	Gzip
	Zstd
	Bzip2
	Xz
)

func (c Codec) String() string {
	return [...]string{"none", "gzip", "zstd", "bzip2", "xz"}[c]
}

// ParseCodec parses a --compress value: none, gzip or zstd.
func ParseCodec(s string) (Codec, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return None, nil
	case "gzip", "gz":
		return Gzip, nil
	case "zstd", "zst":
		return Zstd, nil
	}
	return None, fmt.Errorf("unknown compression %q: use none, gzip or zstd", s)
}

var magics = []struct {
	codec Codec
	magic []byte
}{
	{Gzip, []byte{0x1f, 0x8b}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{Bzip2, []byte("BZh")},
	{Xz, []byte{0xfd, '7', 'z', 'X', 'Z', 0}},
}

// SniffLen is the number of first bytes Sniff needs to tell every codec apart.
const SniffLen = 6

// Sniff reports the codec whose magic bytes start b.
func Sniff(b []byte) Codec {
	for _, m := range magics {
		if bytes.HasPrefix(b, m.magic) {
			return m.codec
		}
	}
	return None
}

// NewReader returns the decompressed bytes of r, choosing the codec from its first bytes
// (None: r's bytes as they are). What the decompressor fails on is returned as it is: the
// caller tells a damaged stream from its input's own errors.
func NewReader(r io.Reader) (io.ReadCloser, Codec, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(SniffLen)
	if err != nil && err != io.EOF {
		return nil, None, err
	}
	codec := Sniff(head)
	switch codec {
	case None:
		return io.NopCloser(br), None, nil
	case Gzip:
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, codec, fmt.Errorf("reading gzip header: %w", err)
		}
		return zr, codec, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithDecoderMaxWindow(256<<20))
		if err != nil {
			return nil, codec, fmt.Errorf("reading zstd header: %w", err)
		}
		return zr.IOReadCloser(), codec, nil
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(br)), codec, nil
	}
	return nil, codec, fmt.Errorf("%s compression is not supported: decompress the input first", codec)
}

// DefaultLevel is the gzip level ferry writes by default: level 1 is about twice as fast as
// 6 for a few percent more bytes, and a bundle's bytes are mostly already-dense binaries.
const DefaultLevel = 1

// An Encoder says how a stream is compressed: as members of Codec at Level, or, with Adapt,
// in parts at the levels Adapt chooses (its codec is Codec's).
type Encoder struct {
	Codec Codec
	// Level is the codec's level (see NewMemberWriter); 0 means DefaultLevel.
	Level int
	Adapt *Adaptive
}

// EffectiveLevel returns the level e's members are compressed at when it does not adapt.
func (e Encoder) EffectiveLevel() int {
	if e.Level == 0 {
		return DefaultLevel
	}
	return e.Level
}

// Check reports whether ferry writes as e says.
func (e Encoder) Check() error {
	if e.Codec != None {
		if _, err := NewMemberWriter(io.Discard, e.Codec, e.EffectiveLevel()); err != nil {
			return err
		}
	}
	if e.Adapt != nil && e.Adapt.Codec() != e.Codec {
		return fmt.Errorf("writing %s, adapting %s", e.Codec, e.Adapt.Codec())
	}
	return nil
}

// Writer returns a writer compressing to dst as e says; with None, it passes the bytes as
// they are. Close ends the last member; it does not close dst.
func (e Encoder) Writer(dst io.Writer) (io.WriteCloser, error) {
	switch {
	case e.Adapt != nil:
		return e.Adapt.Writer(dst), nil
	case e.Codec == None:
		return nopCloser{dst}, nil
	}
	return NewMemberWriter(dst, e.Codec, e.EffectiveLevel())
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// NewMemberWriter returns a writer of one self-contained member of codec — a gzip member or
// a zstd frame — at level (gzip's 1-9, 0 stored; for zstd, 1 is its fastest, up to 4 its
// best), as ferry compresses: in parallel, the same input giving the same bytes. Members
// concatenated are one stream to every reader of the codec.
func NewMemberWriter(w io.Writer, codec Codec, level int) (io.WriteCloser, error) {
	return newMember(w, codec, level)
}

// A member is a writer of one member that can be reset to write another to w.
type member interface {
	io.WriteCloser
	Reset(w io.Writer)
}

func newMember(w io.Writer, codec Codec, level int) (member, error) {
	switch codec {
	case Gzip:
		zw, err := NewGzipWriter(w, level)
		if err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.EncoderLevel(min(max(level, 1), 4))),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(true))
		if err != nil {
			return nil, err
		}
		return zw, nil
	}
	return nil, fmt.Errorf("ferry does not write %s", codec)
}

// resetMember makes zw, done with its member, write the next one to w, as newMember would.
func resetMember(zw member, w io.Writer) error {
	zw.Reset(w)
	if gz, ok := zw.(*pgzip.Writer); ok {
		return setGzip(gz) // pgzip's Reset forgets them
	}
	return nil
}

// NewGzipWriter returns the gzip writer ferry compresses with: pgzip at level, in parallel, with
// a fixed block size and header time, so the same input gives the same bytes.
func NewGzipWriter(w io.Writer, level int) (*pgzip.Writer, error) {
	zw, err := pgzip.NewWriterLevel(w, level)
	if err != nil {
		return nil, fmt.Errorf("gzip level %d: %w", level, err)
	}
	return zw, setGzip(zw)
}

func setGzip(zw *pgzip.Writer) error {
	zw.ModTime = time.Unix(0, 0)
	return zw.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0))
}

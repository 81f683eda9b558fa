package archive

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
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

// The codecs ferry reads; it writes None and Gzip.
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

// sniff reports the codec whose magic bytes start b.
func sniff(b []byte) Codec {
	for _, m := range magics {
		if bytes.HasPrefix(b, m.magic) {
			return m.codec
		}
	}
	return None
}

// Bounds on outer decompression: past bombFloor bytes of output, a stream that expands more
// than bombRatio times is refused. Real bundles expand about 3×; a gzip bomb about 1000×.
var (
	bombFloor int64 = 1 << 30
	bombRatio int64 = 200
)

// decompress returns the decompressed bytes of r, choosing the codec from its first bytes.
// With guard, it refuses streams that expand like a decompression bomb.
func decompress(r io.Reader, guard bool) (io.ReadCloser, Codec, error) {
	in := &countingReader{r: r}
	br := bufio.NewReaderSize(in, 1<<16)
	head, err := br.Peek(6)
	if err != nil && err != io.EOF {
		return nil, None, err
	}
	codec := sniff(head)
	var out io.ReadCloser
	switch codec {
	case None:
		return io.NopCloser(br), None, nil
	case Gzip:
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, codec, fmt.Errorf("reading gzip header: %w", err)
		}
		out = zr
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithDecoderMaxWindow(256<<20))
		if err != nil {
			return nil, codec, fmt.Errorf("reading zstd header: %w", err)
		}
		out = zr.IOReadCloser()
	case Bzip2:
		out = io.NopCloser(bzip2.NewReader(br))
	default:
		return nil, codec, fmt.Errorf("%s compression is not supported: decompress the input first", codec)
	}
	out = &codecErrs{ReadCloser: out, codec: codec, in: in}
	if guard {
		out = &bombGuard{ReadCloser: out, in: in}
	}
	return out, codec, nil
}

// codecErrs names the codec in what a decompressor fails on, and marks it as a corrupt
// archive; errors of the input pass as they are, a cut as a cut.
type codecErrs struct {
	io.ReadCloser
	codec Codec
	in    *countingReader
}

func (c *codecErrs) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == nil || err == io.EOF || (c.in.err != nil && errors.Is(err, c.in.err)) {
		return n, err
	}
	if !strings.HasPrefix(err.Error(), c.codec.String()+":") {
		err = fmt.Errorf("%s: %w", c.codec, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, err
	}
	return n, fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// countingReader counts the bytes read through it and keeps the error it ended with.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

type bombGuard struct {
	io.ReadCloser
	in  *countingReader
	out int64
}

func (g *bombGuard) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	g.out += int64(n)
	if g.out > bombFloor && g.out > bombRatio*g.in.n {
		return n, fmt.Errorf("input expands from %d to over %d bytes: refusing a likely decompression bomb: %w", g.in.n, g.out, ErrTooLarge)
	}
	return n, err
}

// encodeBody writes the tar body of one entry — size bytes of src and the zero padding to the
// next 512-byte block — to dst, compressed by enc. Each blob being its own member (or members)
// is what lets a spool hold compressed bodies ahead of the headers naming them, and keeps the
// output the same whichever way a blob arrived.
func encodeBody(dst io.Writer, src io.Reader, size int64, enc encoder) error {
	w, err := enc.writer(dst)
	if err != nil {
		return err
	}
	n, err := io.CopyN(w, src, size)
	if err != nil {
		if err == io.EOF {
			err = fmt.Errorf("got %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
		}
		return err
	}
	if _, err := w.Write(make([]byte, padding(size))); err != nil {
		return err
	}
	return w.Close()
}

// An encoder compresses blob bodies: each as one member of codec at level, or in parts as
// adapt chooses.
type encoder struct {
	codec Codec
	level int
	adapt *Adaptive
}

func (e encoder) writer(dst io.Writer) (io.WriteCloser, error) {
	switch {
	case e.adapt != nil:
		return e.adapt.Writer(dst), nil
	case e.codec == None:
		return nopCloser{dst}, nil
	}
	return NewMemberWriter(dst, e.codec, e.level)
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

func padding(size int64) int64 { return -size & 511 }

package archive

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferrytool/ferry/compress"
)

// Bounds on outer decompression: past bombFloor bytes of output, a stream that expands more
// than bombRatio times is refused. Real bundles expand about 3×; a gzip bomb about 1000×.
var (
	bombFloor int64 = 1 << 30
	bombRatio int64 = 200
)

// decompress returns the decompressed bytes of r, choosing the codec from its first bytes;
// what the decompressor fails on is ErrCorrupt, and it refuses streams that expand like a
// decompression bomb.
func decompress(r io.Reader) (io.ReadCloser, compress.Codec, error) {
	in := &countingReader{r: r}
	out, codec, err := compress.NewReader(in)
	if err != nil || codec == compress.None {
		return out, codec, err
	}
	return &bombGuard{ReadCloser: &codecErrs{ReadCloser: out, codec: codec, in: in}, in: in}, codec, nil
}

// codecErrs names the codec in what a decompressor fails on, and marks it as a corrupt
// archive; errors of the input pass as they are, a cut as a cut.
type codecErrs struct {
	io.ReadCloser
	codec compress.Codec
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

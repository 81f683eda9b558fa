// Package boundjson reads JSON from across a gap in bounded memory: a json.Decoder that
// fails once any one value or token it is reading grows past a bound, however large the
// whole input is.
package boundjson

import (
	"encoding/json"
	"fmt"
	"io"
)

// MaxValue is the bound ferry puts on each value of an inventory or a content index it
// reads (a list of digests, a page of chunks): the whole may be far larger.
const MaxValue = 64 << 20

// NewDecoder returns a decoder of r that refuses a value or token of more than max bytes:
// it holds at most about twice that.
func NewDecoder(r io.Reader, max int64) *json.Decoder {
	b := &bounded{r: r, max: max}
	b.dec = json.NewDecoder(b)
	return b.dec
}

// bounded reads for a decoder, and fails once the bytes the decoder has read but not
// consumed (the value or token it is in) pass max.
type bounded struct {
	r    io.Reader
	dec  *json.Decoder
	read int64
	max  int64
}

func (b *bounded) Read(p []byte) (int, error) {
	if b.read-b.dec.InputOffset() > b.max {
		return 0, fmt.Errorf("a JSON value of more than %d MiB", b.max>>20)
	}
	n, err := b.r.Read(p[:min(int64(len(p)), b.max)])
	b.read += int64(n)
	return n, err
}

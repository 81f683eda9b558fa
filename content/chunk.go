package content

import (
	"bufio"
	"io"
)

// Chunks are cut where a rolling hash of the last bytes (a gear hash, as FastCDC's) has its
// top bits zero: the same content gives the same cuts wherever it sits, so a file that
// changed in a few places keeps its other chunks. Files smaller than minChunk are one chunk.
const (
	minChunk  = 16 << 10
	maxChunk  = 256 << 10
	chunkMask = 1<<16 - 1 // cut about every 64 KiB past minChunk
)

// gear maps a byte to a pseudo-random word (splitmix64 of a fixed seed): the cuts must be the
// same on every machine and in every version that shares an index.
var gear = func() (g [256]uint64) {
	x := uint64(0x6ea7f3c1d2b5a489)
	for i := range g {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		g[i] = z ^ z>>31
	}
	return g
}()

// cut returns the length of the first chunk of p, the next bytes of a file: at most
// maxChunk, and all of p when p is shorter than a chunk can be.
func cut(p []byte) int {
	if len(p) <= minChunk {
		return len(p)
	}
	p = p[:min(len(p), maxChunk)] // so that the loop needs no bounds checks
	var h uint64
	for i := minChunk; i < len(p); i++ {
		h = h<<1 + gear[p[i]]
		if h&(chunkMask<<48) == 0 {
			return i + 1
		}
	}
	return len(p)
}

// chunks reads n bytes of a file from r and hands each chunk to each: the slice is valid only
// during the call.
func chunks(r *bufio.Reader, n int64, each func(p []byte) error) error {
	for n > 0 {
		p, err := r.Peek(int(min(n, maxChunk)))
		if len(p) == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		c := cut(p)
		if err := each(p[:c]); err != nil {
			return err
		}
		r.Discard(c)
		n -= int64(c)
	}
	return nil
}

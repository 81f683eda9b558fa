package content

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"strconv"
)

// A segmenter receives a layer's bytes in order, cut in two kinds: raw bytes (tar headers,
// extended headers, padding, the end of the archive, anything not understood) and the chunks
// of regular files' contents. Every byte of the layer is passed once, in order: a layer is the
// concatenation of what its segmenter received, whatever the parse made of it.
type segmenter interface {
	raw(p []byte) error
	chunk(p []byte, sum [32]byte) error
}

const block = 512

// segment reads the tar stream r to its end and cuts it for s. A header it cannot parse ends
// the parse: the rest goes raw. It never fails on what the bytes are, only on reading them.
func segment(r io.Reader, s segmenter) error {
	br := bufio.NewReaderSize(r, maxChunk)
	hdr := make([]byte, block)
	for {
		n, err := io.ReadFull(br, hdr)
		if err != nil {
			if n > 0 || err != io.EOF {
				if err := s.raw(hdr[:n]); err != nil {
					return err
				}
			}
			return noEOF(err)
		}
		size, file, ok := parseHeader(hdr)
		if err := s.raw(hdr); err != nil {
			return err
		}
		if !ok {
			return rawRest(br, s)
		}
		if file && size > 0 {
			err = chunks(br, size, func(p []byte) error { return s.chunk(p, sha256.Sum256(p)) })
		} else {
			err = rawN(br, size, s)
		}
		if err == nil {
			err = rawN(br, (block-size%block)%block, s)
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil // a short stream: what came was passed on raw
			}
			return err
		}
	}
}

// noEOF turns the end of the stream into success.
func noEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

// parseHeader reads a tar header block: the size of the data after it and whether that data
// is a regular file's content. ok is false for a block of zeros (the end of the archive) and
// for anything that is not a valid header (its checksum).
func parseHeader(h []byte) (size int64, file, ok bool) {
	if bytes.Count(h, []byte{0}) == block || !checksumOK(h) {
		return 0, false, false
	}
	size, ok = parseNumber(h[124:136])
	if !ok || size < 0 {
		return 0, false, false
	}
	switch h[156] {
	case '0', 0, '7':
		return size, true, true
	case 'x', 'g', 'L', 'K', 'S':
		return size, false, true // extended headers and sparse maps: kept raw
	}
	return 0, false, true // links, directories, devices: no data whatever the size says
}

// checksumOK checks a header's checksum as tar readers do: unsigned or signed sums of the
// block with the checksum field as spaces.
func checksumOK(h []byte) bool {
	want, ok := parseNumber(h[148:156])
	if !ok {
		return false
	}
	var unsigned, signed int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}

// parseNumber reads a tar numeric field: octal text, or base-256 with the high bit set.
func parseNumber(f []byte) (int64, bool) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0] != 0x80 || len(f) < 9 {
			return 0, false
		}
		var n int64
		for _, c := range f[len(f)-8:] {
			n = n<<8 | int64(c)
		}
		return n, n >= 0 && bytes.Count(f[1:len(f)-8], []byte{0}) == len(f)-9
	}
	s := string(bytes.Trim(f, " \x00"))
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseInt(s, 8, 64)
	return n, err == nil
}

// rawN passes the next n bytes of br raw.
func rawN(br *bufio.Reader, n int64, s segmenter) error {
	for n > 0 {
		p, err := br.Peek(int(min(n, maxChunk)))
		if len(p) > 0 {
			if err := s.raw(p); err != nil {
				return err
			}
			br.Discard(len(p))
			n -= int64(len(p))
		}
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// rawRest passes the rest of br raw.
func rawRest(br *bufio.Reader, s segmenter) error {
	err := rawN(br, 1<<62, s)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

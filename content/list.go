package content

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/ferrytool/ferry/internal/leftover"
)

// A recList is the chunk records of one layer (or pack), in the order they lie: up to listAt
// of them in memory, the rest in a file unlinked as soon as it is made. A layer of any number
// of files is indexed in bounded memory. The zero recList is empty.
type recList struct {
	mem  []rec
	f    *os.File // the records before mem, recSize bytes each
	w    *bufio.Writer
	disk int
}

// listAt is how many records a recList holds in memory (48 bytes each).
var listAt = 1 << 15 // a variable for the tests

func (l *recList) add(r rec) {
	if len(l.mem) == listAt {
		l.spill()
	}
	l.mem = append(l.mem, r)
}

// spill writes the records in memory out to the file. A file that cannot be made keeps
// them in memory; one that cannot be written fails each.
func (l *recList) spill() {
	if len(l.mem) == 0 {
		return
	}
	if l.f == nil {
		f, err := leftover.Unlinked("ferry-recs-")
		if err != nil {
			return
		}
		l.f, l.w = f, bufio.NewWriterSize(f, 1<<16)
	}
	var b [recSize]byte
	for _, r := range l.mem {
		l.w.Write(putRec(b[:], r.sum, loc{off: r.off, size: r.size}))
	}
	l.w.Flush() // a list spilled by its maker is read by several at once (an Ahead's cuts)
	l.disk += len(l.mem)
	l.mem = l.mem[:0]
}

// len is how many records l holds.
func (l *recList) len() int { return l.disk + len(l.mem) }

// close lets go of the file of a list no longer needed.
func (l *recList) close() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}

// each hands each record to f, in order.
func (l *recList) each(f func(rec)) error {
	return l.from(0, func(r rec) bool { f(r); return true })
}

// from hands f the records that lie at or after off, in order, until it returns false: those
// on disk found by a binary search, and read from there.
func (l *recList) from(off int64, f func(rec) bool) error {
	if l == nil {
		return nil
	}
	if l.f != nil {
		if err := l.w.Flush(); err != nil {
			return fmt.Errorf("a layer's chunk records on disk: %w", err)
		}
		var b [recSize]byte
		var err error
		first := sort.Search(l.disk, func(i int) bool {
			if _, e := l.f.ReadAt(b[:], int64(i)*recSize); e != nil {
				err = e
				return true
			}
			return getRec(b[:]).off >= off
		})
		if err != nil {
			return fmt.Errorf("a layer's chunk records on disk: %w", err)
		}
		br := bufio.NewReaderSize(io.NewSectionReader(l.f, int64(first)*recSize, int64(l.disk-first)*recSize), 8<<10)
		for range l.disk - first {
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return fmt.Errorf("a layer's chunk records on disk: %w", err)
			}
			at := getRec(b[:])
			if !f(rec{[32]byte(b[:32]), at.off, at.size}) {
				return nil
			}
		}
	}
	for _, r := range l.mem[sort.Search(len(l.mem), func(i int) bool { return l.mem[i].off >= off }):] {
		if !f(r) {
			return nil
		}
	}
	return nil
}

// putRec writes a chunk's record as runs and lists keep it: its sha256, then its offset,
// layer and size, big-endian, recSize bytes.
func putRec(b []byte, sum [32]byte, l loc) []byte {
	copy(b, sum[:])
	binary.BigEndian.PutUint64(b[32:], uint64(l.off))
	binary.BigEndian.PutUint32(b[40:], l.layer)
	binary.BigEndian.PutUint32(b[44:], l.size)
	return b[:recSize]
}

func getRec(b []byte) loc {
	return loc{off: int64(binary.BigEndian.Uint64(b[32:])), layer: binary.BigEndian.Uint32(b[40:]), size: binary.BigEndian.Uint32(b[44:])}
}

package archive

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"os"

	"github.com/ferrytool/ferry/compress"
)

// A bundle may hold any number of entries, under names of any length, and which of them it
// uses is known only once its metadata is read, which docker's own saves put last. So the
// reader keeps in memory, for each entry, a key made of its name and a ref: for a data
// entry, the index of its record (digests, size, codec), kept in memory for the first
// recordsInMemory data entries and in a temporary file for the rest. Names are kept only
// for reporting, up to sampleMax bytes of them.

// A NameKey stands for an entry name in this process: a hash of it, with a seed no bundle
// can know, so that no two names of a bundle share a key but by a chance of 2⁻⁶⁴ a pair (and
// then the reader refuses the second as a duplicate). Readers and sinks keep it, not the
// name, for entries a bundle may not use.
type NameKey uint64

var keySeed = maphash.MakeSeed()

// KeyOf returns the key of an entry name.
func KeyOf(name string) NameKey { return NameKey(maphash.String(keySeed, name)) }

// A ref is what the reader keeps of an entry besides its key: the index of a data entry's
// record, or what kind of other entry it is.
type ref uint32

const (
	metaRef    ref          = math.MaxUint32 - iota // metadata: metaFiles, docker's legacy json and VERSION
	linkRef                                         // a symlink or hard link
	skippedRef                                      // of no use, skipped unread
	maxRecords = skippedRef                         // data entries' refs are below
)

// maxEntries caps the entries of a bundle (directories aside): with what the reader keeps
// of each, a bundle of that many tiny entries is read in well under 64 MiB of memory (a
// million took 65 MiB). A bundle of images has a few per layer: even a thousand images of
// 125 layers each, none shared, in docker's legacy layout, are 375 000.
var maxEntries = 500_000

// A record is what the reader keeps of a data entry until the metadata says whether the
// bundle uses it.
type record struct {
	digest [32]byte // of the content
	diffID [32]byte // of the content decompressed, when codec is not compress.None
	size   int64
	codec  compress.Codec
	unkept bool // JSON not kept, the JSON before it having reached keptMax
}

// recordsInMemory is how many records stay in memory: a bundle of images has a few per
// layer, one of many small entries (any number of them) has the rest in a file.
const recordsInMemory = 4096

const recordSize = 32 + 32 + 8 + 2

// records holds the records of a bundle's data entries.
type records struct {
	mem  []record
	file *os.File
	w    *bufio.Writer
	n    ref   // records in all
	err  error // the first failure to read one back: resolve returns it
}

// add keeps the record whose ref is rs.n.
func (rs *records) add(r record) error {
	rs.n++
	if len(rs.mem) < recordsInMemory {
		rs.mem = append(rs.mem, r)
		return nil
	}
	if rs.file == nil {
		f, err := heldFile()
		if err != nil {
			return err
		}
		rs.file, rs.w = f, bufio.NewWriterSize(f, 64<<10)
	}
	var buf [recordSize]byte
	copy(buf[:32], r.digest[:])
	copy(buf[32:64], r.diffID[:])
	binary.LittleEndian.PutUint64(buf[64:], uint64(r.size))
	buf[72] = byte(r.codec)
	if r.unkept {
		buf[73] = 1
	}
	_, err := rs.w.Write(buf[:])
	return err
}

// get returns record i; when it cannot be read back, a zero record, and rs.err says why.
func (rs *records) get(i ref) record {
	if i < recordsInMemory {
		return rs.mem[i]
	}
	var buf [recordSize]byte
	err := rs.w.Flush()
	if err == nil {
		_, err = rs.file.ReadAt(buf[:], int64(i-recordsInMemory)*recordSize)
	}
	if err != nil && rs.err == nil {
		rs.err = fmt.Errorf("reading back what was kept of an entry: %w", err)
	}
	r := record{size: int64(binary.LittleEndian.Uint64(buf[64:])), codec: compress.Codec(buf[72]), unkept: buf[73] == 1}
	copy(r.digest[:], buf[:32])
	copy(r.diffID[:], buf[32:64])
	return r
}

func (rs *records) close() {
	if rs.file != nil {
		rs.file.Close()
	}
}

package content

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/internal/atomicfile"
	"github.com/ferrytool/ferry/internal/boundjson"
	"github.com/ferrytool/ferry/internal/leftover"
)

// A Cache keeps what indexing learnt of each layer, by diffID, in a directory, so that a
// store's layers are read once and not at every inventory. An entry is a hint: a wrong one
// gives a delta whose layers fail their diffIDs, never a wrong layer. An entry is JSON: the
// layer (diffID, size, refs: the images that held it when it was read), its chunk records
// (appendRec, no layer number) in pages as an index writes them, and the sha256 of the
// records, in hex: a damaged entry is no entry. Entries are written and read a page at a
// time.
type Cache struct {
	dir string     // "" keeps none
	mu  sync.Mutex // for Add
	// read lists the layers read since the last Save, by where their records (putRec: the
	// first, and how many) lie in spool, a file unlinked as soon as it is made: a store of
	// any size is indexed in a few MiB of memory.
	read  map[v1.Hash][2]int64
	spool *os.File
	end   int64 // records in spool
}

// NewCache returns the cache of dir; "" keeps nothing.
func NewCache(dir string) *Cache { return &Cache{dir: dir, read: map[v1.Hash][2]int64{}} }

func (c *Cache) path(diffID v1.Hash) string {
	return filepath.Join(c.dir, diffID.Algorithm, diffID.Hex)
}

// Add reads a layer into x as Index.Add does, and remembers what it learnt for Save. Several
// goroutines may Add into the same x at once, as long as nothing else uses x meanwhile.
func (c *Cache) Add(ctx context.Context, x *Index, r io.Reader) (v1.Hash, error) {
	return c.add(ctx, x, r)
}

// Learn adds a layer as Add does, one known already, its diffID checked as it is read (a
// layer a load rebuilds): it is not hashed again, and one not read to its size is not added.
func (c *Cache) Learn(ctx context.Context, x *Index, r io.Reader, known Layer) error {
	_, err := c.add(ctx, x, r, known)
	return err
}

func (c *Cache) add(ctx context.Context, x *Index, r io.Reader, known ...Layer) (v1.Hash, error) {
	l, recs, err := scan(ctx, r, known...)
	if err != nil {
		return v1.Hash{}, err
	}
	c.Know(x, Chunks{l, recs})
	return l.DiffID, nil
}

// Know adds a layer whose chunks are known without reading it (a rebuilt layer's,
// Rebuilt.Chunks) as Add does one it reads.
func (c *Cache) Know(x *Index, ch Chunks) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x.add(ch.Layer, ch.recs)
	c.keep(ch.DiffID, ch.recs)
	ch.recs.close()
}

// keep spools the records of a layer read, for Save. A spool that cannot be written keeps
// nothing: the layer will be read again next time.
func (c *Cache) keep(diffID v1.Hash, recs *recList) {
	if c.dir == "" {
		return
	}
	if c.spool == nil {
		f, err := leftover.Unlinked("ferry-cache-")
		if err != nil {
			return
		}
		c.spool, c.end = f, 0
	}
	w := bufio.NewWriterSize(io.NewOffsetWriter(c.spool, c.end*recSize), 1<<16)
	var n int64
	var b [recSize]byte
	err := recs.each(func(r rec) {
		w.Write(putRec(b[:], r.sum, loc{off: r.off, size: r.size}))
		n++
	})
	if err == nil && w.Flush() == nil {
		c.read[diffID] = [2]int64{c.end, n}
		c.end += n
	}
}

// Save keeps the layers Add read, with the names x gives them now. A cache that cannot be
// written is no cache: Save fails on nothing.
func (c *Cache) Save(x *Index) {
	for diffID, at := range c.read {
		if i, ok := x.layer[diffID]; ok {
			c.put(x.Layers[i], func(f func(rec)) error {
				br := bufio.NewReaderSize(io.NewSectionReader(c.spool, at[0]*recSize, at[1]*recSize), 1<<16)
				var b [recSize]byte
				for range at[1] {
					if _, err := io.ReadFull(br, b[:]); err != nil {
						return err
					}
					l := getRec(b[:])
					f(rec{[32]byte(b[:32]), l.off, l.size})
				}
				return nil
			})
		}
	}
	clear(c.read)
	if c.spool != nil {
		c.spool.Close()
		c.spool = nil
	}
}

// Put keeps what is known of a layer (or a pack) now.
func (c *Cache) Put(ch Chunks) error { return c.put(ch.Layer, ch.recs.each) }

// put keeps a layer (or a pack), and the records each gives, as they come.
func (c *Cache) put(l Layer, each func(func(rec)) error) error {
	if c.dir == "" {
		return nil
	}
	head, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path(l.DiffID)), 0o755); err != nil {
		return err
	}
	f, err := atomicfile.Create(c.path(l.DiffID), 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<16)
	bw.Write(head[:len(head)-1]) // the object, open
	bw.WriteString(`,"chunks":`)
	pw := newPageWriter(bw)
	if err := each(func(r rec) { pw.add(r) }); err != nil {
		return err
	}
	fmt.Fprintf(bw, `,"sum":"%x"}`, pw.end())
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Commit()
}

// Load adds the layer diffID names to x from the cache, and says whether it could.
func (c *Cache) Load(x *Index, diffID v1.Hash) bool {
	ch, ok := c.Entry(diffID)
	if ok {
		x.AddChunks(ch)
	}
	return ok
}

// Entry returns what the cache keeps of the layer (or pack) diffID names, if it keeps it.
func (c *Cache) Entry(diffID v1.Hash) (Chunks, bool) {
	if c.dir == "" {
		return Chunks{}, false
	}
	f, err := os.Open(c.path(diffID))
	if err != nil {
		return Chunks{}, false
	}
	defer f.Close()
	ch, err := readEntry(boundjson.NewDecoder(bufio.NewReaderSize(f, 1<<16), boundjson.MaxValue))
	if err != nil || ch.DiffID != diffID {
		return Chunks{}, false
	}
	return ch, true
}

// readEntry reads an entry Put wrote, each record checked against the layer's size, the
// records against their sum.
func readEntry(dec *json.Decoder) (Chunks, error) {
	ch := Chunks{recs: &recList{}}
	if err := expect(dec, json.Delim('{')); err != nil {
		return ch, err
	}
	h := sha256.New()
	var sum string
	sized := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return ch, err
		}
		switch key {
		case "diffID":
			err = dec.Decode(&ch.DiffID)
		case "size":
			err, sized = dec.Decode(&ch.Size), true
		case "refs":
			err = dec.Decode(&ch.Refs)
		case "chunks":
			if !sized || ch.Size < 0 {
				return ch, fmt.Errorf("cache entry: chunks before a size")
			}
			err = readPages(dec, func(buf []byte) error {
				h.Write(buf)
				return readRecs(buf, false, []int64{ch.Size}, func(_ uint32, r rec) { ch.recs.add(r) })
			})
		case "sum":
			err = dec.Decode(&sum)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return ch, err
		}
	}
	if sum != hex.EncodeToString(h.Sum(nil)) {
		return ch, fmt.Errorf("cache entry: its records do not match their sum")
	}
	return ch, expect(dec, json.Delim('}'))
}

package content

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/internal/atomicfile"
)

// A Cache keeps what indexing learnt of each layer, by diffID, in a directory, so that a
// store's layers are read once and not at every inventory. An entry is a hint: a wrong one
// gives a delta whose layers fail their diffIDs, never a wrong layer.
type Cache struct {
	dir string     // "" keeps none
	mu  sync.Mutex // for Add
	// read lists the layers read since the last Save, by where their records (appendRec, no
	// layer number) lie in spool, a file unlinked as soon as it is made: a store of any size
	// is indexed in a few MiB of memory.
	read  map[v1.Hash][2]int64
	spool *os.File
	end   int64
}

// NewCache returns the cache of dir; "" keeps nothing.
func NewCache(dir string) *Cache { return &Cache{dir: dir, read: map[v1.Hash][2]int64{}} }

// cacheEntry is one layer's entry: the layer, the images that held it when it was read, its
// chunk records (appendRec, no layer number) in base64, and their sha256: a damaged entry
// is no entry.
type cacheEntry struct {
	Layer
	Chunks string `json:"chunks"`
	Sum    string `json:"sum"` // hex
}

func (c *Cache) path(diffID v1.Hash) string {
	return filepath.Join(c.dir, diffID.Algorithm, diffID.Hex)
}

// Add reads a layer into x as Index.Add does, and remembers what it learnt for Save. Several
// goroutines may Add into the same x at once, as long as nothing else uses x meanwhile.
func (c *Cache) Add(ctx context.Context, x *Index, r io.Reader) (v1.Hash, error) {
	l, recs, err := scan(ctx, r)
	if err != nil {
		return v1.Hash{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	x.add(l, recs)
	c.keep(l.DiffID, recs)
	return l.DiffID, nil
}

// keep spools the records of a layer read for Save. A spool that cannot be written keeps
// nothing: the layer will be read again next time.
func (c *Cache) keep(diffID v1.Hash, recs []rec) {
	if c.dir == "" {
		return
	}
	if c.spool == nil {
		f, err := os.CreateTemp("", "ferry-cache-*")
		if err != nil {
			return
		}
		os.Remove(f.Name())
		c.spool, c.end = f, 0
	}
	var buf []byte
	for _, r := range recs {
		buf = appendRec(buf, r)
	}
	if _, err := c.spool.WriteAt(buf, c.end); err == nil {
		c.read[diffID] = [2]int64{c.end, int64(len(buf))}
		c.end += int64(len(buf))
	}
}

// Save keeps the layers Add read, with the names x gives them now. A cache that cannot be
// written is no cache: Save fails on nothing.
func (c *Cache) Save(x *Index) {
	for diffID, at := range c.read {
		if i, ok := x.layer[diffID]; ok {
			buf := make([]byte, at[1])
			if _, err := c.spool.ReadAt(buf, at[0]); err == nil {
				c.put(x.Layers[i], buf)
			}
		}
	}
	clear(c.read)
	if c.spool != nil {
		c.spool.Close()
		c.spool = nil
	}
}

// Put keeps what is known of a layer (or a pack) now.
func (c *Cache) Put(ch Chunks) error {
	var buf []byte
	for _, r := range ch.recs {
		buf = appendRec(buf, r)
	}
	return c.put(ch.Layer, buf)
}

// put keeps a layer (or a pack), and its records as appendRec wrote them.
func (c *Cache) put(l Layer, buf []byte) error {
	if c.dir == "" {
		return nil
	}
	data, err := json.Marshal(cacheEntry{Layer: l, Chunks: base64.StdEncoding.EncodeToString(buf), Sum: sumHex(buf)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path(l.DiffID)), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(c.path(l.DiffID), data, 0o644)
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
	data, err := os.ReadFile(c.path(diffID))
	if err != nil {
		return Chunks{}, false
	}
	var e cacheEntry
	if json.Unmarshal(data, &e) != nil || e.DiffID != diffID || e.Size < 0 {
		return Chunks{}, false
	}
	buf, err := base64.StdEncoding.DecodeString(e.Chunks)
	if err != nil || sumHex(buf) != e.Sum {
		return Chunks{}, false
	}
	var recs []rec
	if readRecs(buf, false, []int64{e.Size}, func(_ uint32, r rec) { recs = append(recs, r) }) != nil {
		return Chunks{}, false
	}
	return Chunks{e.Layer, recs}, true
}

func sumHex(p []byte) string {
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:])
}

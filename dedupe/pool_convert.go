package dedupe

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/atomicfile"
)

// StoreContent stores as content the whole layers whose content the rest of the pool mostly
// holds, as an add would have stored them: a pool of an older ferry, or a set added before
// the set it is a rebuild of. It first learns where the chunks of each whole layer lie,
// reading once those it does not know yet. Then it takes the layers in the order the
// bundles came, each over the layers kept whole before it and the packs the pool holds; a
// layer something is stored over stays whole. For each layer it stores as content: the
// recipe and pack first, then the records holding the layer, then index.json; gc then frees
// the gzip blobs no record needs. Killed at any point, every bundle is held in one form or
// the other, and the next run goes on. It returns how many layers it stored as content and
// the bytes of the gzip blobs they took.
func (p *Pool) StoreContent(ctx context.Context) (layers int, whole int64, err error) {
	unlock, err := p.Lock()
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	records, err := p.Records()
	if err != nil {
		return 0, 0, err
	}
	cv := newConverter(p, records)
	if err := cv.learn(ctx); err != nil {
		return 0, 0, err
	}
	for _, d := range cv.order() {
		if err := cv.layer(ctx, d); err != nil {
			return cv.layers, cv.whole, fmt.Errorf("layer sha256:%s: %w", d, err)
		}
	}
	_, _, err = p.gc(false)
	return cv.layers, cv.whole, err
}

// A converter is a run of StoreContent.
type converter struct {
	p       *Pool
	records []*Record
	cache   *content.Cache
	x       *poolIndex
	built   map[string]bool         // what layers stored as content are stored over, by sum
	content map[string]ContentLayer // the layers some record stores as content

	layers int
	whole  int64
}

// newConverter indexes what the layers to decide may be stored over from the start: the
// packs and the parts no record holds as a whole layer.
func newConverter(p *Pool, records []*Record) *converter {
	cv := &converter{p: p, records: records, cache: content.NewCache(p.contentDir()),
		x: &poolIndex{content.NewIndex(), map[string]Part{}}, built: map[string]bool{}, content: map[string]ContentLayer{}}
	held := packedLayers(records)
	for _, r := range records {
		for d, c := range r.Content {
			cv.content[d] = c
			for _, part := range c.Base {
				cv.built[part.Sum] = true
			}
		}
		for _, part := range r.bases() {
			if _, ok := held[part.Sum]; !ok {
				cv.index(part)
			}
		}
	}
	return cv
}

// index adds part to what layers may be stored over, if its chunks are known.
func (cv *converter) index(part Part) {
	if _, ok := cv.x.parts[part.Sum]; ok || cv.x.Chunks() >= maxIndexChunks {
		return
	}
	if ch, ok := cv.cache.Entry(sha256Hex(part.Sum)); ok && ch.Size == part.Raw {
		cv.x.AddChunks(ch)
		cv.x.parts[part.Sum] = part
	}
}

// order lists the whole layers in the order the bundles came.
func (cv *converter) order() []string {
	var out []string
	for _, r := range cv.records {
		for _, d := range slices.Sorted(maps.Keys(r.Layers)) {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out
}

// learn reads each whole layer whose chunks the cache does not know yet, checking it
// against its diffID.
func (cv *converter) learn(ctx context.Context) error {
	for _, r := range cv.records {
		for d, s := range r.Layers {
			if ch, ok := cv.cache.Entry(sha256Hex(d)); ok && ch.Size == r.Blobs[d] {
				continue
			}
			rc, err := cv.p.openRaw(s.Digest)
			if err != nil {
				return fmt.Errorf("reading layer sha256:%s: %w", d, err)
			}
			ch, err := content.Scan(ctx, rc)
			rc.Close()
			if err == nil && ch.DiffID.Hex != d {
				err = fmt.Errorf("%w: blob sha256:%s decompresses to %s, not the layer it stands for", ErrDamaged, s.Digest, ch.DiffID)
			}
			if err == nil {
				err = cv.cache.Put(ch)
			}
			if err != nil {
				return fmt.Errorf("reading layer sha256:%s: %w", d, err)
			}
		}
	}
	return nil
}

// layer decides layer d: stored as content if some record stores it so already, or if the
// pool mostly holds its content and storing it so is worth it; else kept whole, and
// indexed for the layers after it.
func (cv *converter) layer(ctx context.Context, d string) error {
	var s Stored
	for _, r := range cv.records {
		if st, ok := r.Layers[d]; ok {
			s = st
		}
	}
	whole := Part{Stored: s, Sum: d, Raw: cv.size(d)}
	if c, ok := cv.content[d]; ok && cv.holds(c) {
		return cv.switchTo(d, c)
	}
	ch, ok := cv.cache.Entry(sha256Hex(d))
	if cv.built[d] || !ok || 2*cv.x.Known(ch) < ch.Size {
		cv.index(whole)
		return nil
	}
	c, pack, err := cv.encode(ctx, whole)
	if err != nil || c == nil {
		cv.index(whole)
		return err
	}
	if c.Pack != nil {
		if err := cv.cache.Put(pack); err != nil {
			return err
		}
		cv.index(*c.Pack)
	}
	cv.layers++
	cv.whole += s.Size
	return cv.switchTo(d, *c)
}

// size returns the size of layer d.
func (cv *converter) size(d string) int64 {
	for _, r := range cv.records {
		if n, ok := r.Blobs[d]; ok {
			return n
		}
	}
	return 0
}

// holds reports whether every blob c needs is there.
func (cv *converter) holds(c ContentLayer) bool {
	for _, part := range c.parts() {
		if !exists(cv.p.BlobPath(sha256Hex(part.Digest))) {
			return false
		}
	}
	return true
}

// encode encodes the whole layer over the index and, when that is worth it, puts its recipe
// and pack in place, returning how it is stored as content and where its pack's chunks lie.
func (cv *converter) encode(ctx context.Context, whole Part) (*ContentLayer, content.Chunks, error) {
	rc, err := cv.p.openRaw(whole.Digest)
	if err != nil {
		return nil, content.Chunks{}, err
	}
	defer rc.Close()
	dir := filepath.Join(cv.p.Dir, "blobs", "sha256")
	recipe, pack := filepath.Join(dir, tempPrefix+randomHex()), filepath.Join(dir, tempPrefix+randomHex())
	defer os.Remove(recipe)
	defer os.Remove(pack)
	h := sha256.New()
	e, err := cv.x.encodeFiles(ctx, io.TeeReader(rc, h), recipe, pack)
	if err == nil && archive.HashOf(h).Hex != whole.Sum {
		err = fmt.Errorf("%w: blob sha256:%s decompresses to %s, not the layer it stands for", ErrDamaged, whole.Digest, archive.HashOf(h))
	}
	if err != nil {
		return nil, content.Chunks{}, err
	}
	c := e.content(cv.x, whole.Size)
	if c == nil {
		return nil, content.Chunks{}, nil
	}
	err = os.Rename(recipe, cv.p.BlobPath(sha256Hex(e.recipe.Digest)))
	if err == nil && c.Pack != nil {
		err = os.Rename(pack, cv.p.BlobPath(sha256Hex(e.pack.Digest)))
	}
	if err == nil {
		err = atomicfile.SyncDir(dir)
	}
	return c, e.enc.Pack, err
}

// switchTo stores layer d as c in every record that holds it whole: the records, then
// index.json.
func (cv *converter) switchTo(d string, c ContentLayer) error {
	for _, r := range cv.records {
		if _, ok := r.Layers[d]; !ok {
			continue
		}
		delete(r.Layers, d)
		if r.Content == nil {
			r.Content = map[string]ContentLayer{}
		}
		r.Content[d] = c
		r.Manifests = map[string]Stored{}
		if err := cv.p.exposeAll(r, nil); err != nil {
			return err
		}
		if err := cv.p.writeRecord(r); err != nil {
			return err
		}
	}
	cv.content[d] = c
	return cv.p.writeIndex()
}

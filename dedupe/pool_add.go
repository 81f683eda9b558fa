package dedupe

import (
	"fmt"
	"sync"
	"time"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
)

// An Adding is a bundle on its way into the pool: an archive.Sink. After Commit, Stored and
// Skipped say how many bytes of blobs the pool took in and already had, and Record how it
// stores each layer.
type Adding struct {
	*Stage
	Record *Record

	pool   *Pool
	known  map[string]*packed // how the pool held each layer when the add started
	index  *poolIndex         // the content the pool held then
	mu     sync.Mutex
	packed map[string]*packed // entry name → the entry compressed, or as content
}

// Add starts adding a bundle named name.
func (p *Pool) Add(name string) (*Adding, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("invalid bundle name %q: use letters, digits, '.', '_' and '-'", name)
	}
	if exists(p.recordPath(name)) {
		return nil, fmt.Errorf("the pool already holds a bundle named %s: pick another --name or rm it first", name)
	}
	records, err := p.Records()
	if err != nil {
		return nil, err
	}
	a := &Adding{pool: p, known: heldLayers(records), index: p.contentIndex(records), packed: map[string]*packed{}}
	a.Stage, err = p.Stage(func(b *archive.Bundle) error {
		if exists(p.recordPath(name)) {
			return fmt.Errorf("the pool already holds a bundle named %s", name)
		}
		a.Record = a.newRecord(name, b, records)
		if err := a.remember(); err != nil {
			return err
		}
		if err := p.exposeAll(a.Record, nil); err != nil {
			return err
		}
		if err := p.writeRecord(a.Record); err != nil {
			return err
		}
		return p.writeIndex()
	})
	if a.Stage != nil {
		a.Stage.storeAs = a.storeAs
	}
	return a, err
}

func (a *Adding) newRecord(name string, b *archive.Bundle, records []*Record) *Record {
	r := &Record{Name: name, Added: time.Now().UTC(), Codec: b.Codec.String(), Index: b.Index.Manifests,
		Blobs: map[string]int64{}, Layers: map[string]Stored{}, Manifests: map[string]Stored{}, Content: map[string]ContentLayer{}}
	for _, img := range b.Images {
		ri := RecordImage{Tags: img.RepoTags, ID: img.ID().String()}
		if img.Manifest != nil {
			ri.Manifest = img.Manifest.Digest.String()
		}
		r.Images = append(r.Images, ri)
	}
	for _, blob := range b.Reachable() {
		size := blob.Size
		if blob.Missing { // a thin bundle's: sized as the pool holds it
			for _, old := range records {
				size = max(size, old.Blobs[blob.Digest.Hex])
			}
		}
		r.Blobs[blob.Digest.Hex] = size
		if p, ok := a.form(blob); ok && p.content != nil {
			r.Content[blob.Digest.Hex] = *p.content
		} else if ok {
			r.Layers[blob.Digest.Hex] = p.Stored
		}
	}
	return r
}

// remember keeps, in the pool's content cache, where the chunks of the layers the add stored
// lie (a whole layer's, or the pack's of one stored as content), once it checked that what
// the layers stored as content build on is still there. Under the lock.
func (a *Adding) remember() error {
	for d, c := range a.Record.Content {
		for _, part := range c.parts() {
			if !exists(a.pool.BlobPath(sha256Hex(part.Digest))) {
				return fmt.Errorf("layer sha256:%s builds on blob sha256:%s, which was removed while the bundle was read (a gc?): add the bundle again", d, part.Digest)
			}
		}
	}
	cache := content.NewCache(a.pool.contentDir())
	for _, p := range a.packed {
		if p.path == "" || p.raw.Hex == "" {
			continue // the pool had it, or the bundle does not use it
		}
		if err := cache.Put(p.chunks); err != nil {
			return fmt.Errorf("keeping where the chunks of layer %s lie: %w", p.raw, err)
		}
	}
	return nil
}

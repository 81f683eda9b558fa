package dedupe

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ferrytool/ferry/archive"
)

// An Adding is a bundle on its way into the pool: an archive.Sink. After Commit, Stored and
// Skipped say how many bytes of blobs the pool took in and already had.
type Adding struct {
	*Stage
	Record *Record

	known  map[string]Stored // layers the pool holds compressed, when the add started
	mu     sync.Mutex
	packed map[string]*packed // entry name → the entry compressed
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
	a := &Adding{known: packedLayers(records), packed: map[string]*packed{}}
	a.Stage, err = p.Stage(func(b *archive.Bundle) error {
		if exists(p.recordPath(name)) {
			return fmt.Errorf("the pool already holds a bundle named %s", name)
		}
		a.Record = a.newRecord(name, b, records)
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
		Blobs: map[string]int64{}, Layers: map[string]Stored{}, Manifests: map[string]Stored{}}
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
		if digest, _, ok := a.storeAs(blob); ok {
			st, _ := os.Stat(a.Stage.l.BlobPath(digest))
			r.Layers[blob.Digest.Hex] = Stored{Digest: digest.Hex, Size: st.Size()}
		}
	}
	return r
}

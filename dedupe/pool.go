package dedupe

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/atomicfile"
)

// A Pool is an OCI image layout that records bundles and stores each of their blobs once,
// however many bundles share it. A layer that arrives compressed (a registry's) is stored as
// it came, so its digest survives; one that arrives uncompressed (docker's) is stored gzipped,
// and decompresses to exactly the bytes that came in. The pool keeps the manifests as they
// came, for exports, and beside them, for a manifest naming uncompressed layers, one naming
// the compressed blobs, which index.json lists: same config, same diffIDs, same image ID.
// An exported bundle has exactly the original manifests, digests and image IDs. The price:
// the same layer saved once from docker and once from a registry is two blobs.
//
// Records (ferry/bundles/NAME.json) are the truth; index.json is rebuilt from them on every
// change, listing each image as NAME/TAG, so skopeo and crane read images straight from the
// pool (oci:DIR:NAME/TAG). A change writes blobs, then the record, then index.json, each
// atomically and under the layout's lock: a pool killed at any point holds at worst unreferenced
// blobs and a stale stage, which the next add or gc clears.
type Pool struct {
	*Layout
}

// A Record describes one bundle in a pool.
type Record struct {
	Name   string        `json:"name"`
	Added  time.Time     `json:"added"`
	Images []RecordImage `json:"images"`
	// Codec is the outer compression of the bundle file added, which exports repeat.
	Codec string `json:"codec,omitempty"`
	// Index holds the bundle's index.json entries.
	Index []v1.Descriptor `json:"index"`
	// Blobs maps the hex digest of every blob the bundle carried to its size.
	Blobs map[string]int64 `json:"blobs"`
	// Layers maps the hex digest of each uncompressed layer to the compressed blob the pool
	// stores in its place; Manifests, that of each manifest or index naming such layers to
	// the one naming the compressed blobs, which index.json lists.
	Layers    map[string]Stored `json:"layers,omitempty"`
	Manifests map[string]Stored `json:"manifests,omitempty"`
}

// stored returns the blobs the pool holds for the bundle, by hex digest, with their sizes.
func (r *Record) stored() map[string]int64 {
	out := map[string]int64{}
	for d, size := range r.Blobs {
		if s, ok := r.Layers[d]; ok {
			out[s.Digest] = s.Size
		} else {
			out[d] = size
		}
	}
	for _, s := range r.Manifests {
		out[s.Digest] = s.Size
	}
	return out
}

// A RecordImage is an image of a recorded bundle.
type RecordImage struct {
	Tags     []string `json:"tags"`
	ID       string   `json:"id"`
	Manifest string   `json:"manifest,omitempty"`
}

// Bytes is what the bundle adds up to: each of its blobs once.
func (r *Record) Bytes() int64 {
	var n int64
	for _, size := range r.Blobs {
		n += size
	}
	return n
}

// Errors of pools.
var (
	// ErrNoBundle: the pool records no bundle of that name and no image of that tag.
	ErrNoBundle = errors.New("not in the pool")
	// ErrDamaged: Check found problems.
	ErrDamaged = errors.New("the pool is damaged")
)

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (p *Pool) recordsDir() string { return filepath.Join(p.Dir, "ferry", "bundles") }

func (p *Pool) recordPath(name string) string {
	return filepath.Join(p.recordsDir(), name+".json")
}

// InitPool makes dir a pool; an existing pool is left as it is.
func InitPool(dir string) (*Pool, error) {
	l, err := OpenLayout(dir)
	if err != nil {
		return nil, err
	}
	p := &Pool{l}
	if err := os.MkdirAll(p.recordsDir(), 0o755); err != nil {
		return nil, err
	}
	unlock, err := p.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := l.init(); err != nil {
		return nil, err
	}
	if !exists(filepath.Join(dir, "index.json")) {
		return p, p.writeIndex()
	}
	return p, nil
}

// OpenPool opens a pool made by InitPool.
func OpenPool(dir string) (*Pool, error) {
	if !exists(filepath.Join(dir, "ferry", "bundles")) || !exists(filepath.Join(dir, "oci-layout")) {
		return nil, fmt.Errorf("%s is not a ferry pool: make one with `ferry pool init %s`", dir, dir)
	}
	return &Pool{&Layout{Dir: dir, FS: LocalFS{}}}, nil
}

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

func (p *Pool) writeRecord(r *Record) error {
	data, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p.recordPath(r.Name), data, 0o644)
}

// Records returns the pool's bundles, oldest first.
func (p *Pool) Records() ([]*Record, error) {
	entries, err := os.ReadDir(p.recordsDir())
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(p.recordsDir(), e.Name()))
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("reading record %s: %w", e.Name(), err)
		}
		out = append(out, &r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Added.Equal(out[j].Added) {
			return out[i].Added.Before(out[j].Added)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// index is index.json as the records say it should be: every image of every bundle, its
// ref name NAME/TAG (NAME/sha256-<hex> when untagged).
func (p *Pool) index() (v1.IndexManifest, error) {
	idx := EmptyIndex()
	records, err := p.Records()
	if err != nil {
		return idx, err
	}
	for _, r := range records {
		for _, d := range r.Index {
			ref := archive.RefTag(d.Annotations)
			if ref == "" {
				ref = "sha256-" + d.Digest.Hex
			}
			ann := map[string]string{}
			for k, v := range d.Annotations {
				ann[k] = v
			}
			ann["org.opencontainers.image.ref.name"] = r.Name + "/" + ref
			d.Annotations = ann
			if s, ok := r.Manifests[d.Digest.Hex]; ok {
				d.Digest, d.Size = sha256Hex(s.Digest), s.Size
			}
			idx.Manifests = append(idx.Manifests, d)
		}
	}
	return idx, nil
}

func (p *Pool) writeIndex() error {
	_, err := p.repairIndex()
	return err
}

// repairIndex rewrites index.json from the records when it does not list what they hold
// (a process killed between writing a record and the index), and says whether it did. Call
// it under Lock.
func (p *Pool) repairIndex() (bool, error) {
	want, err := p.index()
	if err != nil {
		return false, err
	}
	if have, err := p.Layout.Index(); err == nil && sameIndex(want, have) && p.has(p.path("index.json")) {
		return false, nil
	}
	return true, p.WriteIndex(want)
}

// Remove drops a bundle's record; gc then removes the blobs no other bundle needs.
func (p *Pool) Remove(name string) error {
	unlock, err := p.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(p.recordPath(name)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bundle %s: %w", name, ErrNoBundle)
	} else if err != nil {
		return err
	}
	return p.writeIndex()
}

// GC removes every blob no record needs, and stale stages; with dryRun it only says which.
func (p *Pool) GC(dryRun bool) (removed []v1.Hash, bytes int64, err error) {
	unlock, err := p.Lock()
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	if !dryRun {
		if _, err := p.repairIndex(); err != nil {
			return nil, 0, err
		}
	}
	return p.gc(dryRun)
}

// gc is GC under the lock.
func (p *Pool) gc(dryRun bool) (removed []v1.Hash, bytes int64, err error) {
	records, err := p.Records()
	if err != nil {
		return nil, 0, err
	}
	needed := map[string]bool{}
	for _, r := range records {
		for d := range r.stored() {
			needed[d] = true
		}
	}
	dir := filepath.Join(p.Dir, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	since, live := p.LiveSince()
	for _, e := range entries {
		if needed[e.Name()] || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, 0, err
		}
		if live && !info.ModTime().Before(since) {
			continue // a live add may have put it in place: its commit will name it
		}
		removed = append(removed, v1.Hash{Algorithm: "sha256", Hex: e.Name()})
		bytes += info.Size()
		if !dryRun {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return removed, bytes, err
			}
		}
	}
	if !dryRun {
		err = p.removeStale()
	}
	return removed, bytes, err
}

// Stats are a pool's sizes.
type Stats struct {
	// Logical is what the bundles add up to, each counting every blob it carried.
	Logical int64 `json:"logical"`
	// Unique counts each blob the bundles carried once, as it came.
	Unique int64 `json:"unique"`
	// Stored is what the blobs take on disk, each stored once, layers that came
	// uncompressed compressed.
	Stored int64 `json:"stored"`
	// Bundles: for each bundle, its size and the bytes of blobs no other bundle needs.
	Bundles []BundleStats `json:"bundles"`
}

// BundleStats describe one bundle of a pool.
type BundleStats struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	Own   int64  `json:"own"`
}

// Ratio is logical over stored bytes: what dedupe and compression save together.
func (s Stats) Ratio() float64 {
	if s.Stored == 0 {
		return 1
	}
	return float64(s.Logical) / float64(s.Stored)
}

// Compression is stored over unique bytes: what compression leaves.
func (s Stats) Compression() float64 {
	if s.Unique == 0 {
		return 1
	}
	return float64(s.Stored) / float64(s.Unique)
}

// Stats measures the pool.
func (p *Pool) Stats() (Stats, error) {
	records, err := p.Records()
	if err != nil {
		return Stats{}, err
	}
	users, unique := map[string]int{}, map[string]int64{}
	for _, r := range records {
		for d := range r.stored() {
			users[d]++
		}
		for d, size := range r.Blobs {
			unique[d] = size
		}
	}
	var s Stats
	for _, size := range unique {
		s.Unique += size
	}
	for _, r := range records {
		bs := BundleStats{Name: r.Name, Bytes: r.Bytes()}
		for d, size := range r.stored() {
			if users[d] == 1 {
				bs.Own += size
			}
		}
		s.Logical += bs.Bytes
		s.Bundles = append(s.Bundles, bs)
	}
	entries, err := os.ReadDir(filepath.Join(p.Dir, "blobs", "sha256"))
	if err != nil {
		return s, err
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			s.Stored += info.Size()
		}
	}
	return s, nil
}

// Export returns a bundle of what refs name — bundle names, or tags of images (the newest
// bundle holding each) — with the same manifests, digests and image IDs as when they came in,
// the outer compression (Codec) of the first, and the pool as the source of its blobs: layers
// it stores compressed come out decompressed, as they came in.
func (p *Pool) Export(refs []string) (*archive.Bundle, archive.BlobSource, error) {
	records, err := p.Records()
	if err != nil {
		return nil, nil, err
	}
	b, src := &archive.Bundle{}, exportSource{V1Source: archive.V1Source{}, pool: p, packed: packedLayers(records)}
	// index.json lists the entries as they came, not as AddImage makes them.
	var index []v1.Descriptor
	listed := map[string]bool{}
	for i, ref := range refs {
		descs, r, err := find(records, ref)
		if err != nil {
			return nil, nil, err
		}
		if c, err := archive.ParseCodec(r.Codec); i == 0 && err == nil {
			b.Codec = c
		}
		for _, d := range descs {
			if key := d.Digest.String() + " " + indexKey(d); !listed[key] {
				listed[key] = true
				index = append(index, d)
			}
			var tags []string
			if tag := archive.RefTag(d.Annotations); tag != "" {
				tags = append(tags, tag)
			}
			var err error
			if d.MediaType.IsIndex() {
				var idx *blobIndex
				if idx, err = p.blobIndex(d); err == nil {
					_, err = b.AddIndex(idx, tags, platformOf(d), src.V1Source)
				}
			} else {
				var img v1.Image
				if img, err = p.blobImage(d); err == nil {
					_, err = b.AddImage(img, tags, src.V1Source)
				}
			}
			if err != nil {
				return nil, nil, fmt.Errorf("exporting %s: %w", ref, err)
			}
		}
	}
	b.Index.Manifests = index
	return b, src, nil
}

func platformOf(d v1.Descriptor) v1.Platform {
	if d.Platform != nil {
		return *d.Platform
	}
	return archive.HostPlatform()
}

// exportSource serves an export's blobs, decompressing the layers the pool stores compressed.
type exportSource struct {
	archive.V1Source
	pool   *Pool
	packed map[string]Stored
}

func (s exportSource) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	if st, ok := s.packed[b.Digest.Hex]; ok {
		return s.pool.openPacked(st)
	}
	return s.V1Source.Open(ctx, b)
}

// find returns the index entries ref names, a whole bundle or one image by tag, and the
// record holding them.
func find(records []*Record, ref string) ([]v1.Descriptor, *Record, error) {
	for _, r := range records {
		if r.Name == ref {
			return r.Index, r, nil
		}
	}
	for i := len(records) - 1; i >= 0; i-- {
		for _, d := range records[i].Index {
			if archive.RefTag(d.Annotations) == ref {
				return []v1.Descriptor{d}, records[i], nil
			}
		}
	}
	return nil, nil, fmt.Errorf("%s: %w (see ferry pool ls)", ref, ErrNoBundle)
}

// A Problem is something Check found wrong.
type Problem struct {
	Blob   string `json:"blob,omitempty"`
	Bundle string `json:"bundle,omitempty"`
	What   string `json:"problem"`
	// Repaired: Check mended it; the pool is sound in this respect now.
	Repaired bool `json:"repaired,omitempty"`
}

func (p Problem) String() string {
	where := p.Bundle
	if p.Blob != "" {
		where = strings.TrimSpace(where + " blob " + p.Blob)
	}
	return where + ": " + p.What
}

// Check checks the pool's structure: records readable, every blob they need present with
// its size, index.json as the records say (rewritten from them when it is not); with readData, every blob's content against its
// digest, and that each compressed layer decompresses to the layer (diffID) it stands for.
func (p *Pool) Check(ctx context.Context, readData bool) ([]Problem, error) {
	records, err := p.Records()
	if err != nil {
		return nil, err
	}
	var problems []Problem
	checked := map[string]bool{}
	for _, r := range records {
		for d, s := range r.Layers {
			if readData && !checked[s.Digest] && ctx.Err() == nil {
				checked[s.Digest] = true
				if what := p.checkPacked(d, s); what != "" {
					problems = append(problems, Problem{Bundle: r.Name, Blob: "sha256:" + s.Digest, What: what})
				}
			}
		}
		for d, size := range r.stored() {
			if checked[d] {
				continue
			}
			checked[d] = true
			if what := p.checkBlob(ctx, d, size, readData); what != "" {
				problems = append(problems, Problem{Bundle: r.Name, Blob: "sha256:" + d, What: what})
			}
		}
	}
	unlock, err := p.Lock()
	if err != nil {
		return problems, err
	}
	defer unlock()
	if repaired, err := p.repairIndex(); err != nil {
		problems = append(problems, Problem{What: "index.json does not list what the records hold, and rewriting it failed: " + err.Error()})
	} else if repaired {
		problems = append(problems, Problem{What: "index.json did not list what the records hold (an add or rm was killed): rewritten from them", Repaired: true})
	}
	return problems, ctx.Err()
}

func (p *Pool) checkBlob(ctx context.Context, hexDigest string, size int64, readData bool) string {
	path := p.BlobPath(v1.Hash{Algorithm: "sha256", Hex: hexDigest})
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "missing"
	case st.Size() != size:
		return fmt.Sprintf("%d bytes, want %d", st.Size(), size)
	case !readData || ctx.Err() != nil:
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err.Error()
	}
	if got := archive.HashOf(h); got.Hex != hexDigest {
		return "content hashes to " + got.String()
	}
	return ""
}

func sameIndex(a, b v1.IndexManifest) bool {
	ja, _ := json.Marshal(a.Manifests)
	jb, _ := json.Marshal(b.Manifests)
	return string(ja) == string(jb)
}

package dedupe

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/internal/atomicfile"
)

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
	// Content maps the hex digest of each uncompressed layer the pool stores as content to
	// its recipe, pack and what they build on. Unlisted are the index entries whose images
	// hold such layers: index.json leaves them out, ferry's own readers rebuild them.
	Content  map[string]ContentLayer `json:"content,omitempty"`
	Unlisted []string                `json:"unlisted,omitempty"`
}

// A ContentLayer is a layer the pool stores as content (package content): a recipe over
// parts the pool holds (whole layers, and the packs of layers stored as content) and a pack
// of the chunks those lack, each a zstd blob.
type ContentLayer struct {
	Recipe Part   `json:"recipe"`
	Pack   *Part  `json:"pack,omitempty"`
	Base   []Part `json:"base"`
	// Whole is the size of the gzip blob the layer would take stored whole.
	Whole int64 `json:"whole"`
}

// A Part is a compressed blob the pool holds, with the sha256 and size of its bytes
// decompressed: a whole layer's gzip (its diffID), a recipe or a pack.
type Part struct {
	Stored
	Sum string `json:"sum"`
	Raw int64  `json:"raw"`
}

// parts returns the blobs c needs: its recipe, its pack and what they build on.
func (c ContentLayer) parts() []Part {
	out := append([]Part{c.Recipe}, c.Base...)
	if c.Pack != nil {
		out = append(out, *c.Pack)
	}
	return out
}

// stored returns the blobs the pool holds for the bundle, by hex digest, with their sizes.
func (r *Record) stored() map[string]int64 {
	out := map[string]int64{}
	for d, size := range r.Blobs {
		if s, ok := r.Layers[d]; ok {
			out[s.Digest] = s.Size
		} else if c, ok := r.Content[d]; ok {
			for _, p := range c.parts() {
				out[p.Digest] = p.Size
			}
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

var (
	validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	validHex  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// check checks that every digest r names is one (a blob's name in the pool) and every size
// a size.
func (r *Record) check() error {
	var parts []Part
	for d, size := range r.Blobs {
		parts = append(parts, Part{Stored: Stored{Digest: d, Size: size}, Sum: d})
	}
	for _, m := range []map[string]Stored{r.Layers, r.Manifests} {
		for d, s := range m {
			parts = append(parts, Part{Stored: s, Sum: d})
		}
	}
	for d, c := range r.Content {
		parts = append(parts, Part{Stored: Stored{Digest: d}, Sum: d})
		parts = append(parts, c.parts()...)
	}
	for _, p := range parts {
		if !validHex.MatchString(p.Digest) || !validHex.MatchString(p.Sum) || p.Size < 0 || p.Raw < 0 {
			return fmt.Errorf("%q (%q, %d bytes, %d) is no blob's digest and size", p.Digest, p.Sum, p.Size, p.Raw)
		}
	}
	return nil
}

func (p *Pool) recordsDir() string { return filepath.Join(p.Dir, "ferry", "bundles") }

func (p *Pool) recordPath(name string) string {
	return filepath.Join(p.recordsDir(), name+".json")
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
		data, err := readAll(LocalFS{}, filepath.Join(p.recordsDir(), e.Name()), 64<<20)
		if err != nil {
			return nil, err
		}
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("reading record %s: %w", e.Name(), err)
		}
		if err := r.check(); err != nil {
			return nil, fmt.Errorf("reading record %s: %w: %w", e.Name(), ErrDamaged, err)
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

package dedupe

import (
	"os"
	"path/filepath"
)

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
	// Content: the layers stored as content.
	Content ContentStats `json:"content"`
}

// ContentStats count the layers a pool stores as content, each once: what they add up to,
// what they would take stored whole (gzip), and what their recipes and packs take.
type ContentStats struct {
	Layers int   `json:"layers"`
	Bytes  int64 `json:"bytes"`
	Whole  int64 `json:"whole"`
	Stored int64 `json:"stored"`
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

// ByLayers is what storing each blob once saves: logical less unique bytes.
func (s Stats) ByLayers() int64 { return s.Logical - s.Unique }

// ByContent is what storing layers as content saves over storing them whole.
func (s Stats) ByContent() int64 { return s.Content.Whole - s.Content.Stored }

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
	var s Stats
	counted := map[string]bool{}
	for _, r := range records {
		for d := range r.stored() {
			users[d]++
		}
		for d, size := range r.Blobs {
			unique[d] = size
		}
		s.Content.add(r, counted)
	}
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

// ContentStats counts the layers r stores as content.
func (r *Record) ContentStats() ContentStats {
	var s ContentStats
	s.add(r, map[string]bool{})
	return s
}

// add counts the layers r stores as content that counted does not list, and lists them.
func (s *ContentStats) add(r *Record, counted map[string]bool) {
	for d, c := range r.Content {
		if counted[d] {
			continue
		}
		counted[d] = true
		s.Layers++
		s.Bytes += r.Blobs[d]
		s.Whole += c.Whole
		s.Stored += c.Recipe.Size
		if c.Pack != nil {
			s.Stored += c.Pack.Size
		}
	}
}

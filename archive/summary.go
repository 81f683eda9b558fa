package archive

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A Summary describes a bundle for people and scripts (ferry ls).
type Summary struct {
	Compression string         `json:"compression"`
	Images      []ImageSummary `json:"images"`
	// Bytes is what the images add up to, counting shared layers once per image;
	// UniqueBytes what the bundle stores, counting each blob once.
	Bytes       int64 `json:"bytes"`
	UniqueBytes int64 `json:"uniqueBytes"`
	// MissingLayers counts layers a thin bundle leaves out for the destination to have.
	MissingLayers int `json:"missingLayers"`
	// Unreferenced counts the entries nothing in the bundle refers to (ignored, never
	// loaded); UnreferencedNames are the first of them.
	Unreferenced      int      `json:"unreferenced,omitempty"`
	UnreferencedNames []string `json:"unreferencedNames,omitempty"`
	// Artifacts counts the bundle's artifacts; Unattached lists those that refer to no
	// manifest (a Helm chart).
	Artifacts  int               `json:"artifacts,omitempty"`
	Unattached []ArtifactSummary `json:"unattached,omitempty"`
	// Platforms are the platforms of multi-platform indexes that manifest.json does not list
	// (docker loads one).
	Platforms []IndexPlatforms `json:"platforms,omitempty"`
}

// namesShown is how many unreferenced names a Summary keeps.
const namesShown = 10

// An ImageSummary describes one image of a bundle.
type ImageSummary struct {
	Tags     []string       `json:"tags"`
	ID       string         `json:"id"`
	Manifest string         `json:"manifest,omitempty"`
	Platform string         `json:"platform,omitempty"`
	Layers   []LayerSummary `json:"layers"`
	Bytes    int64          `json:"bytes"`
	// Referrers are the artifacts that refer to the image's manifest or to an index that
	// lists it, each with those that refer to it.
	Referrers []ArtifactSummary `json:"referrers,omitempty"`
}

// An ArtifactSummary describes an artifact of a bundle.
type ArtifactSummary struct {
	Type   string   `json:"type"`
	Digest string   `json:"digest"`
	Tags   []string `json:"tags,omitempty"`
	// RepoTags name an artifact of its own (a Helm chart), as images are named.
	RepoTags []string `json:"repoTags,omitempty"`
	// Size is the manifest's and its blobs' bytes.
	Size int64 `json:"size"`
	// Subject is the digest it refers to.
	Subject   string            `json:"subject,omitempty"`
	Referrers []ArtifactSummary `json:"referrers,omitempty"`
}

// UnreferencedNote says which entries were ignored, quoted: "" when none were.
func (s Summary) UnreferencedNote() string {
	if s.Unreferenced == 0 {
		return ""
	}
	names := make([]string, len(s.UnreferencedNames))
	for i, n := range s.UnreferencedNames {
		names[i] = Quote(n)
	}
	note := fmt.Sprintf("ignored %d entries nothing in the bundle refers to", s.Unreferenced)
	if len(names) == 0 { // names past what the reader keeps
		return note
	}
	note += ": " + strings.Join(names, ", ")
	if more := s.Unreferenced - len(names); more > 0 {
		note += fmt.Sprintf(" and %d more", more)
	}
	return note
}

// A LayerSummary describes one layer of an image.
type LayerSummary struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diffID"`
	MediaType string `json:"mediaType,omitempty"`
	Size      int64  `json:"size"`
	// Shared: other images of the bundle use this layer too.
	Shared bool `json:"shared,omitempty"`
	// Missing: the bundle leaves it out (thin); the destination must have it.
	Missing bool `json:"missing,omitempty"`
}

// Summary describes the bundle.
func (b *Bundle) Summary() Summary {
	users := map[*Blob]int{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			users[l.Blob]++
		}
	}
	s := Summary{Compression: b.Codec.String(), Images: []ImageSummary{}, Unreferenced: b.Unreferenced}
	s.UnreferencedNames = b.UnreferencedNames[:min(len(b.UnreferencedNames), namesShown)]
	for _, img := range b.Images {
		is := ImageSummary{Tags: img.RepoTags, ID: img.ID().String()}
		if is.Tags == nil {
			is.Tags = []string{}
		}
		if img.Manifest != nil {
			is.Manifest = img.Manifest.Digest.String()
		}
		if img.Platform != nil {
			is.Platform = img.Platform.String()
		}
		for _, l := range img.Layers {
			is.Layers = append(is.Layers, LayerSummary{
				Digest: l.Digest.String(), DiffID: l.DiffID.String(), MediaType: string(l.MediaType),
				Size: l.Size, Shared: users[l.Blob] > 1, Missing: l.Missing,
			})
			is.Bytes += l.Size
			if l.Missing {
				s.MissingLayers++
			}
		}
		is.Bytes += img.Config.Size
		for _, subject := range b.subjectsOf(img) {
			is.Referrers = append(is.Referrers, b.referrerSummaries(subject, 0)...)
		}
		s.Bytes += is.Bytes
		s.Images = append(s.Images, is)
	}
	for _, blob := range b.Reachable() {
		if blob.Present() {
			s.UniqueBytes += blob.Size
		}
	}
	s.Artifacts = len(b.Artifacts)
	s.Unattached = b.referrerSummaries(v1.Hash{}, 0)
	s.Platforms = b.OCIOnly().Platforms
	return s
}

// subjectsOf returns the digests an artifact of img refers to: its manifest's, and those of
// the indexes of the bundle that list it.
func (b *Bundle) subjectsOf(img *Image) []v1.Hash {
	if img.Manifest == nil {
		return nil
	}
	out := []v1.Hash{img.Manifest.Digest}
	for _, blob := range b.Reachable() {
		if !isIndex(blob) {
			continue
		}
		var idx v1.IndexManifest
		if json.Unmarshal(blob.Data, &idx) == nil && slices.ContainsFunc(idx.Manifests, func(d v1.Descriptor) bool { return d.Digest == img.Manifest.Digest }) {
			out = append(out, blob.Digest)
		}
	}
	return out
}

// referrerSummaries describes the artifacts that refer to subject, and those that refer to
// them, to MaxReferrerDepth.
func (b *Bundle) referrerSummaries(subject v1.Hash, depth int) []ArtifactSummary {
	if depth >= MaxReferrerDepth {
		return nil
	}
	var out []ArtifactSummary
	for _, a := range b.Referring(subject) {
		as := ArtifactSummary{Type: a.Type, Digest: a.Manifest.Digest.String(), Tags: a.Tags, RepoTags: a.RepoTags, Size: a.Manifest.Size,
			Referrers: b.referrerSummaries(a.Manifest.Digest, depth+1)}
		if subject != (v1.Hash{}) {
			as.Subject = subject.String()
		}
		for _, blob := range a.Blobs {
			as.Size += blob.Size
		}
		out = append(out, as)
	}
	return out
}

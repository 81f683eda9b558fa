package archive

import (
	"fmt"
	"strings"
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
		s.Bytes += is.Bytes
		s.Images = append(s.Images, is)
	}
	for _, blob := range b.Reachable() {
		if blob.Present() {
			s.UniqueBytes += blob.Size
		}
	}
	return s
}

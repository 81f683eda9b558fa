package archive

import (
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// OCIOnly is what a bundle's OCI part holds beyond the images of manifest.json: what a store
// that holds images alone (docker, podman, containerd) leaves out.
type OCIOnly struct {
	Artifacts []*Artifact
	// Platforms are the images of multi-platform indexes that manifest.json does not list:
	// for each index, in index.json's order, its name and their platforms.
	Platforms []IndexPlatforms
}

// IndexPlatforms names the platforms of a multi-platform index.
type IndexPlatforms struct {
	Name      string   `json:"name"` // its tag, else its digest
	Platforms []string `json:"platforms"`
}

// OCIOnly says what the bundle's OCI part holds beyond the images of manifest.json.
func (b *Bundle) OCIOnly() OCIOnly {
	out := OCIOnly{Artifacts: b.Artifacts}
	held := map[v1.Hash]bool{}
	for _, img := range b.Images {
		if img.Manifest != nil {
			held[img.Manifest.Digest] = true
		}
	}
	walked := map[v1.Hash]bool{}
	var walk func(d v1.Descriptor, depth int) []string
	walk = func(d v1.Descriptor, depth int) []string {
		blob := b.blobs[d.Digest]
		if walked[d.Digest] || depth > maxDepth || blob == nil || blob.Data == nil {
			return nil
		}
		walked[d.Digest] = true
		var idx v1.IndexManifest
		if json.Unmarshal(blob.Data, &idx) != nil {
			return nil
		}
		var platforms []string
		for _, c := range idx.Manifests {
			switch {
			case c.MediaType.IsIndex():
				platforms = append(platforms, walk(c, depth+1)...)
			case c.MediaType.IsImage() && !held[c.Digest] && b.artifactOf[c.Digest] == nil && !walked[c.Digest]:
				walked[c.Digest] = true
				p := "unknown platform"
				if c.Platform != nil {
					p = c.Platform.String()
				}
				platforms = append(platforms, p)
			}
		}
		return platforms
	}
	for _, d := range b.Index.Manifests {
		if !d.MediaType.IsIndex() {
			continue
		}
		if p := walk(d, 0); len(p) > 0 {
			name := RefTag(d.Annotations)
			if name == "" {
				name = d.Digest.String()
			}
			out.Platforms = append(out.Platforms, IndexPlatforms{Name: name, Platforms: p})
		}
	}
	return out
}

// Empty reports whether there is nothing beyond manifest.json's images.
func (o OCIOnly) Empty() bool { return len(o.Artifacts) == 0 && len(o.Platforms) == 0 }

// String says what o holds, for people: "3 artifacts (2 signatures, 1 SBOM) and the
// platforms linux/arm64 of example.com/multi:1"; "" when nothing.
func (o OCIOnly) String() string {
	var parts []string
	if n := len(o.Artifacts); n > 0 {
		var kinds []string
		count := map[string]int{}
		for _, a := range o.Artifacts {
			k := a.Describe()
			if count[k] == 0 {
				kinds = append(kinds, k)
			}
			count[k]++
		}
		for i, k := range kinds {
			n, word := count[k], k
			if typ, ok := strings.CutPrefix(k, "artifact ("); ok {
				word = strings.TrimSuffix(typ, ")") // a type, in no plural
			} else if n > 1 {
				word += "s"
			}
			kinds[i] = fmt.Sprintf("%d %s", n, word)
		}
		what := "artifact"
		if n > 1 {
			what += "s"
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", n, what, strings.Join(kinds, ", ")))
	}
	for _, ip := range o.Platforms {
		parts = append(parts, fmt.Sprintf("the platforms %s of %s", strings.Join(ip.Platforms, ", "), ip.Name))
	}
	return strings.Join(parts, " and ")
}

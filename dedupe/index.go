package dedupe

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Index reads index.json; a layout without one has an empty index.
func (l *Layout) Index() (v1.IndexManifest, error) {
	idx := EmptyIndex()
	data, err := readAll(l.FS, l.path("index.json"), 64<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &idx)
	}
	if err != nil {
		return idx, fmt.Errorf("reading %s/index.json: %w", l.Dir, err)
	}
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	return idx, nil
}

// WriteIndex replaces index.json.
func (l *Layout) WriteIndex(idx v1.IndexManifest) error {
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return l.writeFile(l.path("index.json"), data)
}

// AddToIndex adds descs to index.json; an entry naming the same image replaces the old one,
// as a tag moves. Call it under Lock.
func (l *Layout) AddToIndex(descs []v1.Descriptor) error {
	idx, err := l.Index()
	if err != nil {
		return err
	}
	return l.WriteIndex(MergeIndex(idx, descs))
}

// MergeIndex returns idx with descs added; an entry naming the same image replaces the
// old one, as a tag moves.
func MergeIndex(idx v1.IndexManifest, descs []v1.Descriptor) v1.IndexManifest {
	replaced := map[string]bool{}
	for _, d := range descs {
		replaced[indexKey(d)] = true
	}
	kept := []v1.Descriptor{}
	for _, d := range idx.Manifests {
		if !replaced[indexKey(d)] {
			kept = append(kept, d)
		}
	}
	idx.Manifests = append(kept, descs...)
	return idx
}

// EmptyIndex is the index of a layout without index.json.
func EmptyIndex() v1.IndexManifest {
	return v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
}

func indexKey(d v1.Descriptor) string {
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if n := d.Annotations[k]; n != "" {
			return n
		}
	}
	return d.Digest.String()
}

package archive

import (
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Step returns a bundle of one untagged image made of the first len(diffIDs) layers of an
// image: its config names those diffIDs, the labels and nothing else. layers are the last of
// them, the ones the bundle carries; the layers before are left out (the destination holds
// their chain). Loaded into a docker daemon on the classic store, a step keeps its layers
// there even when a later load is cut short.
func Step(diffIDs []v1.Hash, layers []*Layer, labels map[string]string) (*Bundle, error) {
	if len(layers) > len(diffIDs) {
		return nil, fmt.Errorf("a step of %d layers carries %d", len(diffIDs), len(layers))
	}
	config, err := json.Marshal(v1.ConfigFile{
		OS:     "linux",
		Config: v1.Config{Labels: labels},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
	if err != nil {
		return nil, err
	}
	b := &Bundle{Index: v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}}
	img := &Image{Config: b.AddBlob(&Blob{Digest: sha256Hash(config), Size: int64(len(config)), Data: config})}
	for _, l := range layers { // first: a layer carried is carried wherever the image uses it
		b.AddBlob(l.Blob)
	}
	leftOut := len(diffIDs) - len(layers)
	for i, d := range diffIDs {
		if i < leftOut {
			img.Layers = append(img.Layers, &Layer{Blob: b.AddBlob(&Blob{Digest: d, Missing: true}), DiffID: d})
			continue
		}
		l := layers[i-leftOut]
		if l.DiffID != d {
			return nil, fmt.Errorf("%w: step layer %d is %s, the image's is %s", ErrInvalidMetadata, i, l.DiffID, d)
		}
		img.Layers = append(img.Layers, &Layer{Blob: b.AddBlob(l.Blob), DiffID: d, MediaType: l.MediaType})
	}
	b.Images = []*Image{img}
	return b, nil
}

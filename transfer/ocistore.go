package transfer

import (
	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
)

// ociStore loads bundles into an OCI image layout directory: a dedupe.Layout stage whose
// commit adds the bundle's index entries to index.json.
type ociStore struct {
	*dedupe.Stage
	images []Loaded
}

func newOCIStore(dir string) (*ociStore, error) {
	l, err := dedupe.OpenLayout(dir)
	if err != nil {
		return nil, err
	}
	s := &ociStore{}
	s.Stage, err = l.Stage(func(b *archive.Bundle) error {
		if err := l.AddToIndex(b.Index.Manifests); err != nil {
			return err
		}
		s.images = loadedImages(b)
		return nil
	})
	return s, err
}

func (s *ociStore) loaded() []Loaded { return s.images }

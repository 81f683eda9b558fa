package docker

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store"
)

// Open reads the images through one streamed `docker save` into a spool that encodes for
// opts.Write as it receives: memory stays flat whatever the images' size.
func (s *Store) Open(ctx context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	return store.Spooled(opts, func(sink archive.Sink) (*archive.Bundle, error) {
		return s.Copy(ctx, refs, opts, sink)
	})
}

// Copy reads the images through one streamed `docker save` straight into sink.
func (s *Store) Copy(ctx context.Context, refs []string, opts store.ReadOptions, sink archive.Sink) (*archive.Bundle, error) {
	stream, p, err := s.saveStream(ctx, refs, opts)
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	defer stream.Close()
	b, err := archive.Read(ctx, p.Reader(stream), sink, archive.ReadOptions{Trusted: true})
	if err != nil {
		return nil, fmt.Errorf("reading docker save stream: %w", err)
	}
	return b, nil
}

// CheckRefs checks that refs are image references docker takes.
func CheckRefs(refs []string) error {
	if len(refs) == 0 {
		return fmt.Errorf("no images named")
	}
	for _, ref := range refs {
		if _, err := name.ParseReference(ref); err != nil {
			return fmt.Errorf("%w: image %q: %w", store.ErrInvalidReference, ref, err)
		}
	}
	return nil
}

// saveStream starts one `docker save` of refs, with progress against what it is expected to
// carry (saveEstimate).
func (s *Store) saveStream(ctx context.Context, refs []string, opts store.ReadOptions) (io.ReadCloser, *store.Progress, error) {
	_, total, err := s.SaveLayers(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	stream, err := s.Save(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	return stream, &store.Progress{Total: total, Report: opts.Progress}, nil
}

// SaveLayers returns what a `docker save` of refs will carry, before it starts: the diffIDs
// of each image's layers and an estimate of its bytes (saveEstimate). It checks the
// references.
func (s *Store) SaveLayers(ctx context.Context, refs []string) (layers [][]v1.Hash, total int64, err error) {
	if err := CheckRefs(refs); err != nil {
		return nil, 0, err
	}
	var imgs []savedImage
	for _, ref := range refs {
		img, err := s.Inspect(ctx, ref)
		if err != nil {
			return nil, 0, err
		}
		diffIDs := make([]v1.Hash, len(img.RootFS.Layers))
		for i, d := range img.RootFS.Layers {
			if diffIDs[i], err = v1.NewHash(d); err != nil {
				return nil, 0, fmt.Errorf("image %s: layer %q: %w", ref, d, err)
			}
		}
		history, err := s.History(ctx, img.ID)
		if err != nil {
			return nil, 0, err
		}
		layers = append(layers, diffIDs)
		imgs = append(imgs, savedImage{id: img.ID, size: img.Size, diffIDs: diffIDs, sizes: layerSizes(history, len(diffIDs))})
	}
	return layers, saveEstimate(imgs), nil
}

// A savedImage is what saveEstimate knows of an image: its ID, its size and its layers as the
// daemon counts them (the bytes of their files), the size of each when the history says it.
type savedImage struct {
	id      string
	size    int64
	diffIDs []v1.Hash
	sizes   []int64
}

// layerSizes picks the sizes of an image's layers from its history (Client.History): the
// steps of some bytes, when there is one per layer; nil when not (a layer of no bytes).
func layerSizes(history []int64, layers int) []int64 {
	var sizes []int64
	for _, n := range history {
		if n > 0 {
			sizes = append(sizes, n)
		}
	}
	if len(sizes) != layers {
		return nil
	}
	return sizes
}

// What a docker save carries beyond the bytes of the layers' files: the tar header and
// padding of each file in a layer (measured on Debian's trees, 1 to 6 % of their bytes; more
// where files are tiny), a layer's own entry (and, in the legacy layout, its directory, json
// and VERSION), an image's config, manifest and its lines in index.json, manifest.json and
// repositories.
const (
	saveFileShare  = 16 // 1/16 of the layers' bytes
	saveLayerBytes = 8 << 10
	saveImageBytes = 32 << 10
)

// saveEstimate is the bytes a docker save of imgs is expected to carry: each image once, and
// each layer once where the histories give the layers' sizes (else every layer of an image
// counts, shared or not). An image of many tiny files carries more: progress reports never
// show more done than the total (store.Progress).
func saveEstimate(imgs []savedImage) int64 {
	var total int64
	seen := map[string]bool{}
	add := func(key string, size int64) {
		if !seen[key] {
			seen[key] = true
			total += size + size/saveFileShare + saveLayerBytes
		}
	}
	for _, img := range imgs {
		if seen[img.id] {
			continue
		}
		seen[img.id] = true
		total += saveImageBytes
		for i, d := range img.diffIDs {
			if img.sizes == nil {
				add(img.id+" "+d.String(), img.size/int64(len(img.diffIDs)))
			} else {
				add(d.String(), img.sizes[i])
			}
		}
	}
	return total
}

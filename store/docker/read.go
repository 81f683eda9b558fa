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

// saveStream starts one `docker save` of refs, with progress against the images' sizes.
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
// of each image's layers and the images' size. It checks the references.
func (s *Store) SaveLayers(ctx context.Context, refs []string) (layers [][]v1.Hash, total int64, err error) {
	if err := CheckRefs(refs); err != nil {
		return nil, 0, err
	}
	for _, ref := range refs {
		img, err := s.Inspect(ctx, ref)
		if err != nil {
			return nil, 0, err
		}
		total += img.Size
		diffIDs := make([]v1.Hash, len(img.RootFS.Layers))
		for i, d := range img.RootFS.Layers {
			if diffIDs[i], err = v1.NewHash(d); err != nil {
				return nil, 0, fmt.Errorf("image %s: layer %q: %w", ref, d, err)
			}
		}
		layers = append(layers, diffIDs)
	}
	return layers, total, nil
}

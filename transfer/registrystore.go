package transfer

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/archive"
)

// registryStore spools a bundle, then pushes each image under HOST[/PREFIX]/REPO:TAG once it
// is verified. Blobs go before manifests, so a failed push leaves no tag pointing at less than
// a whole image.
type registryStore struct {
	*archive.Spool
	base     string
	insecure bool
	images   []Loaded
}

func newRegistryStore(_ context.Context, base string, insecure bool) (*registryStore, error) {
	base = strings.TrimSuffix(base, "/")
	if _, err := name.NewRepository(base+"/x", nameOptions(insecure)...); err != nil || base == "" {
		return nil, fmt.Errorf("%w: registry store %q: want registry:HOST[:PORT][/PREFIX]", ErrInvalidReference, base)
	}
	spool, err := archive.NewSpool("", archive.WriteOptions{})
	if err != nil {
		return nil, err
	}
	return &registryStore{Spool: spool, base: base, insecure: insecure}, nil
}

func (s *registryStore) Commit(ctx context.Context, b *archive.Bundle) error {
	defer s.Close()
	for _, img := range b.Images {
		if len(img.RepoTags) == 0 {
			return fmt.Errorf("image %s has no tag to push it under", img.ID())
		}
		v1img, err := img.V1(ctx, s.Spool)
		if err != nil {
			return err
		}
		for _, tag := range img.RepoTags {
			t, _ := archive.ParseTag(tag)
			target, err := name.NewTag(s.base+"/"+strings.TrimPrefix(t.RepositoryStr(), "library/")+":"+t.TagStr(), nameOptions(s.insecure)...)
			if err != nil {
				return fmt.Errorf("pushing %s: %w", tag, err)
			}
			if err := remote.Write(target, v1img, registryOptions(ctx, nil)...); err != nil {
				return fmt.Errorf("pushing %s: %w", target, err)
			}
			s.images = append(s.images, Loaded{Ref: target.String(), ID: img.ID()})
		}
	}
	return nil
}

func (s *registryStore) loaded() []Loaded { return s.images }

package containerd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store"
)

// FullName is an image reference as containerd names images ("app:1" is
// docker.io/library/app:1), or "" when ref is none.
func FullName(ref string) string {
	if ref == "" {
		return ""
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return ""
	}
	repo := r.Context().Name()
	if r.Context().RegistryStr() == name.DefaultRegistry {
		repo = "docker.io/" + r.Context().RepositoryStr()
	}
	if d, ok := r.(name.Digest); ok {
		return repo + "@" + d.DigestStr()
	}
	return repo + ":" + r.Identifier()
}

// Open reads images of the namespace, named as docker names them ("app:1") or as
// containerd does ("docker.io/library/app:1"), into a spool encoded for opts.Write: the
// images outlive the connection. Blobs are verified as they are read. An image whose
// layer blobs were discarded after unpacking (CRI's discard_unpacked_layers) cannot be
// read.
func (s *Store) Open(ctx context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	b, src := &archive.Bundle{}, archive.V1Source{}
	for _, ref := range refs {
		if err := s.addImage(ctx, b, src, ref, opts); err != nil {
			return nil, err
		}
	}
	counted := store.NewImages(b, src, nil).Counted(opts.Progress)
	return store.Spooled(opts, func(sink archive.Sink) (*archive.Bundle, error) {
		k := &keep{Sink: sink}
		if err := archive.Feed(ctx, b, counted.Src, k); err != nil {
			return nil, err
		}
		return k.b, nil
	})
}

// keep is a sink that keeps the bundle it commits: the one whose blobs name the spool's
// entries.
type keep struct {
	archive.Sink
	b *archive.Bundle
}

func (k *keep) Commit(ctx context.Context, b *archive.Bundle) error {
	k.b = b
	return k.Sink.Commit(ctx, b)
}

func (s *Store) addImage(ctx context.Context, b *archive.Bundle, src archive.V1Source, ref string, opts store.ReadOptions) error {
	is := s.client.ImageService()
	img, err := is.Get(ctx, ref)
	if notFound(err) && FullName(ref) != "" {
		img, err = is.Get(ctx, FullName(ref))
	}
	if notFound(err) {
		return fmt.Errorf("%s has no image %s", s, ref)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", s, err)
	}
	tag := ""
	if t, err := archive.ParseTag(ref); err == nil {
		tag = archive.Familiar(t)
	}
	var tags []string
	if tag != "" {
		tags = append(tags, tag)
	}
	target := v1.Descriptor{MediaType: types.MediaType(img.Target.MediaType), Size: img.Target.Size}
	if target.Digest, err = v1.NewHash(img.Target.Digest.String()); err != nil {
		return err
	}
	for target.MediaType.IsIndex() {
		data, err := s.read(ctx, target)
		if err != nil {
			return err
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("%w: index %s: %w", archive.ErrInvalidMetadata, target.Digest, err)
		}
		if opts.AllPlatforms {
			return fmt.Errorf("%s: reading every platform of %s is not supported: name a platform", s, ref)
		}
		want, found := opts.PlatformOrHost(), false
		for _, d := range idx.Manifests {
			if d.Platform != nil && d.Platform.Satisfies(want) {
				target, found = d, true
				break
			}
		}
		if !found {
			return fmt.Errorf("%w: %s has no image for %s", archive.ErrMissingBlob, ref, want.String())
		}
	}
	core := &image{s: s, ctx: ctx}
	var err2 error
	if core.manifest, err2 = s.read(ctx, target); err2 != nil {
		return err2
	}
	m, err := v1.ParseManifest(bytes.NewReader(core.manifest))
	if err != nil {
		return fmt.Errorf("%w: manifest %s: %w", archive.ErrInvalidMetadata, target.Digest, err)
	}
	core.m = m
	core.mediaType = target.MediaType
	if core.config, err = s.read(ctx, m.Config); err != nil {
		return err
	}
	vimg, err := partial.CompressedToImage(core)
	if err != nil {
		return err
	}
	_, err = b.AddImage(vimg, tags, src)
	return err
}

// read reads a small blob (a manifest, an index, a config).
func (s *Store) read(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	data, err := content.ReadBlob(ctx, s.client.ContentStore(), ocispec.Descriptor{Digest: digest.Digest(d.Digest.String()), Size: d.Size})
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", s, d.Digest, err)
	}
	return data, nil
}

// image is an image in the content store, as go-containerregistry's partial package
// completes it.
type image struct {
	s                *Store
	ctx              context.Context
	manifest, config []byte
	m                *v1.Manifest
	mediaType        types.MediaType
}

func (i *image) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *image) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *image) MediaType() (types.MediaType, error) { return i.mediaType, nil }

func (i *image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.m.Layers {
		if d.Digest == h {
			return &layer{i, d}, nil
		}
	}
	if h == i.m.Config.Digest {
		return &layer{i, i.m.Config}, nil
	}
	return nil, fmt.Errorf("%w: %s", archive.ErrMissingBlob, h)
}

type layer struct {
	i *image
	d v1.Descriptor
}

func (l *layer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *layer) Size() (int64, error)                { return l.d.Size, nil }
func (l *layer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }

// Compressed reads the blob as stored, in requests of 1 MiB.
func (l *layer) Compressed() (io.ReadCloser, error) {
	ra, err := l.i.s.client.ContentStore().ReaderAt(l.i.ctx, ocispec.Descriptor{Digest: digest.Digest(l.d.Digest.String()), Size: l.d.Size})
	if notFound(err) {
		return nil, fmt.Errorf("%w: %s holds layer %s only unpacked (its blob was discarded)", archive.ErrMissingBlob, l.i.s, l.d.Digest)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{bufio.NewReaderSize(content.NewReader(ra), 1<<20), ra}, nil
}

package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// V1Source serves the layers of the go-containerregistry images added to a bundle with
// AddImage and AddIndex: the bytes as the source gives them, compressed or not.
type V1Source map[v1.Hash]v1.Layer

// Open returns a layer's blob.
func (s V1Source) Open(_ context.Context, b *Blob) (io.ReadCloser, error) {
	l, ok := s[b.Digest]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrMissingBlob, b.Digest)
	}
	return l.Compressed()
}

// AddImage adds img to the bundle under tags, keeping its manifest and config bytes as they
// are, and records its layers in src.
func (b *Bundle) AddImage(img v1.Image, tags []string, src V1Source) (*Image, error) {
	desc, err := partial.Descriptor(img)
	if err != nil {
		return nil, err
	}
	im, err := b.image(img, src)
	if err != nil {
		return nil, err
	}
	b.addEntry(*desc, tags, im)
	return im, nil
}

// AddIndex adds a multi-platform index with every image it holds to the OCI part of the
// bundle, and the image for platform to manifest.json under tags.
func (b *Bundle) AddIndex(idx v1.ImageIndex, tags []string, platform v1.Platform, src V1Source) (*Image, error) {
	desc, err := partial.Descriptor(idx)
	if err != nil {
		return nil, err
	}
	chosen, err := b.index(idx, platform, src)
	if err != nil {
		return nil, err
	}
	if chosen == nil {
		return nil, fmt.Errorf("%w: index %s has no image for %s", ErrMissingBlob, desc.Digest, platform.String())
	}
	b.addEntry(*desc, tags, chosen)
	return chosen, nil
}

// index adds idx's blobs, recursively, and returns its image for platform, if any.
func (b *Bundle) index(idx v1.ImageIndex, platform v1.Platform, src V1Source) (*Image, error) {
	raw, err := idx.RawManifest()
	if err != nil {
		return nil, err
	}
	b.AddBlob(&Blob{Digest: sha256Hash(raw), Size: int64(len(raw)), Data: raw})
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var chosen *Image
	for _, d := range m.Manifests {
		var img *Image
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			img, err = b.index(child, platform, src)
			if err != nil {
				return nil, err
			}
		case d.MediaType.IsImage():
			child, err := idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err = b.image(child, src); err != nil {
				return nil, err
			}
			img.Platform = d.Platform
			if d.Platform == nil || !d.Platform.Satisfies(platform) {
				img = nil
			}
		}
		if chosen == nil {
			chosen = img
		}
	}
	return chosen, nil
}

// image adds the blobs of img.
func (b *Bundle) image(img v1.Image, src V1Source) (*Image, error) {
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	im := &Image{
		Manifest: b.AddBlob(&Blob{Digest: sha256Hash(rawManifest), Size: int64(len(rawManifest)), Data: rawManifest}),
		Config:   b.AddBlob(&Blob{Digest: sha256Hash(rawConfig), Size: int64(len(rawConfig)), Data: rawConfig}),
	}
	if im.Config.Digest != m.Config.Digest {
		return nil, fmt.Errorf("%w: config hashes to %s, manifest says %s", ErrDigestMismatch, im.Config.Digest, m.Config.Digest)
	}
	for _, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		src[d.Digest] = l
		im.Layers = append(im.Layers, &Layer{Blob: b.AddBlob(&Blob{Digest: d.Digest, Size: d.Size}), MediaType: d.MediaType})
	}
	// Layers are verified against their digests when written; diffIDs come from the config.
	return im, im.verify()
}

// addEntry lists an image in manifest.json and its descriptor in index.json, once per tag.
func (b *Bundle) addEntry(desc v1.Descriptor, tags []string, img *Image) {
	img.RepoTags = append(img.RepoTags, tags...)
	listed := false
	for _, have := range b.Images {
		listed = listed || have == img
	}
	if !listed {
		b.Images = append(b.Images, img)
	}
	if b.Index.SchemaVersion == 0 {
		b.Index = v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	}
	desc.Platform = nil
	b.Index.Manifests = append(b.Index.Manifests, tagged(desc, tags)...)
}

// V1 returns the image as a go-containerregistry image whose blobs come from src (or from
// memory), for writers such as remote.Write. The image must have a manifest.
func (img *Image) V1(ctx context.Context, src BlobSource) (v1.Image, error) {
	if img.Manifest == nil {
		return nil, fmt.Errorf("%w: image %s has no manifest", ErrMissingBlob, img.ID())
	}
	return partial.CompressedToImage(&v1Image{ctx: ctx, img: img, src: src})
}

type v1Image struct {
	ctx context.Context
	img *Image
	src BlobSource
}

func (i *v1Image) RawConfigFile() ([]byte, error) { return i.img.Config.Data, nil }
func (i *v1Image) RawManifest() ([]byte, error)   { return i.img.Manifest.Data, nil }

func (i *v1Image) MediaType() (types.MediaType, error) {
	m, err := v1.ParseManifest(bytes.NewReader(i.img.Manifest.Data))
	if err != nil {
		return "", err
	}
	if m.MediaType == "" {
		return types.OCIManifestSchema1, nil
	}
	return m.MediaType, nil
}

func (i *v1Image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range i.img.Layers {
		if l.Digest == h {
			return &v1Layer{i, l}, nil
		}
	}
	if h == i.img.Config.Digest {
		return &v1Layer{i, &Layer{Blob: i.img.Config, MediaType: types.OCIConfigJSON}}, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrMissingBlob, h)
}

type v1Layer struct {
	img *v1Image
	l   *Layer
}

func (l *v1Layer) Digest() (v1.Hash, error)            { return l.l.Digest, nil }
func (l *v1Layer) Size() (int64, error)                { return l.l.Size, nil }
func (l *v1Layer) MediaType() (types.MediaType, error) { return l.l.MediaType, nil }
func (l *v1Layer) Compressed() (io.ReadCloser, error) {
	return OpenBlob(l.img.ctx, l.l.Blob, l.img.src)
}

// OpenBlob returns a blob's content: from memory when it is kept there, else from src.
func OpenBlob(ctx context.Context, b *Blob, src BlobSource) (io.ReadCloser, error) {
	if b.Missing {
		return nil, fmt.Errorf("%w: %s is not in the bundle", ErrMissingBlob, b.Digest)
	}
	if b.Data != nil {
		return io.NopCloser(bytes.NewReader(b.Data)), nil
	}
	return src.Open(ctx, b)
}

// BlobLayer returns a blob as a go-containerregistry layer whose content comes from memory or
// src, for writers such as remote.WriteLayer that upload blobs by digest (an artifact's).
func BlobLayer(ctx context.Context, blob *Blob, src BlobSource) (v1.Layer, error) {
	return partial.CompressedToLayer(&v1Layer{img: &v1Image{ctx: ctx, src: src}, l: &Layer{Blob: blob, MediaType: "application/octet-stream"}})
}

package dedupe

import (
	"encoding/json"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Exports read manifests and indexes from the pool's blobs by digest, as they came in:
// index.json lists the forms naming compressed layers, so go-containerregistry's layout
// reader, which looks digests up there, would not find them.

// blobIndex is an index stored in the pool.
type blobIndex struct {
	p   *Pool
	raw []byte
	m   v1.IndexManifest
}

func (p *Pool) blobIndex(d v1.Descriptor) (*blobIndex, error) {
	raw, err := os.ReadFile(p.BlobPath(d.Digest))
	if err != nil {
		return nil, err
	}
	idx := &blobIndex{p: p, raw: raw}
	return idx, json.Unmarshal(raw, &idx.m)
}

func (i *blobIndex) MediaType() (types.MediaType, error)         { return i.m.MediaType, nil }
func (i *blobIndex) Digest() (v1.Hash, error)                    { return partial.Digest(i) }
func (i *blobIndex) Size() (int64, error)                        { return partial.Size(i) }
func (i *blobIndex) IndexManifest() (*v1.IndexManifest, error)   { return &i.m, nil }
func (i *blobIndex) RawManifest() ([]byte, error)                { return i.raw, nil }
func (i *blobIndex) Image(h v1.Hash) (v1.Image, error)           { return i.p.blobImage(i.child(h)) }
func (i *blobIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) { return i.p.blobIndex(i.child(h)) }

func (i *blobIndex) child(h v1.Hash) v1.Descriptor {
	for _, d := range i.m.Manifests {
		if d.Digest == h {
			return d
		}
	}
	return v1.Descriptor{Digest: h}
}

// blobImage is an image stored in the pool: a partial.CompressedImageCore.
type blobImage struct {
	p   *Pool
	raw []byte
	m   v1.Manifest
}

func (p *Pool) blobImage(d v1.Descriptor) (v1.Image, error) {
	raw, err := os.ReadFile(p.BlobPath(d.Digest))
	if err != nil {
		return nil, err
	}
	img := &blobImage{p: p, raw: raw}
	if err := json.Unmarshal(raw, &img.m); err != nil {
		return nil, err
	}
	if img.m.MediaType == "" {
		img.m.MediaType = d.MediaType
	}
	return partial.CompressedToImage(img)
}

func (i *blobImage) MediaType() (types.MediaType, error) { return i.m.MediaType, nil }
func (i *blobImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *blobImage) RawConfigFile() ([]byte, error) {
	return os.ReadFile(i.p.BlobPath(i.m.Config.Digest))
}

func (i *blobImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.m.Layers {
		if d.Digest == h {
			return blobLayer{i.p, d}, nil
		}
	}
	return blobLayer{i.p, v1.Descriptor{Digest: h}}, nil
}

// blobLayer is a layer blob as the pool stores it. Exports open the layers the pool stores
// compressed through exportSource, never through this.
type blobLayer struct {
	p *Pool
	d v1.Descriptor
}

func (l blobLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l blobLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l blobLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
func (l blobLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.p.BlobPath(l.d.Digest)) }

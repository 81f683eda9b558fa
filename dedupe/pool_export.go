package dedupe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
)

// Export returns a bundle of what refs name — bundle names, or tags of images (the newest
// bundle holding each, with the artifacts of that bundle that refer to it) — with the same manifests, digests and image IDs as when they came in,
// the outer compression (Codec) of the first, and the pool as the source of its blobs: layers
// it stores compressed come out decompressed, as they came in.
func (p *Pool) Export(refs []string) (*archive.Bundle, archive.BlobSource, error) {
	records, err := p.Records()
	if err != nil {
		return nil, nil, err
	}
	b, src := &archive.Bundle{}, exportSource{V1Source: archive.V1Source{}, pool: p, held: heldLayers(records)}
	// index.json lists the entries as they came, not as AddImage makes them.
	var index []v1.Descriptor
	listed := map[string]bool{}
	for i, ref := range refs {
		descs, r, err := find(records, ref)
		if err != nil {
			return nil, nil, err
		}
		if r.Name != ref { // one image: with the artifacts of the bundle that refer to it
			refs, err := archive.ReferrersIn(r.Index, descs, func(d v1.Descriptor) ([]byte, error) { return os.ReadFile(p.BlobPath(d.Digest)) })
			if err != nil {
				return nil, nil, fmt.Errorf("exporting %s: %w", ref, err)
			}
			for _, rf := range refs {
				descs = append(descs, rf.Desc)
			}
		}
		if c, err := compress.ParseCodec(r.Codec); i == 0 && err == nil {
			b.Codec = c
		}
		for _, d := range descs {
			if key := d.Digest.String() + " " + indexKey(d); !listed[key] {
				listed[key] = true
				index = append(index, d)
			}
			var tags []string
			if tag := archive.RefTag(d.Annotations); tag != "" {
				tags = append(tags, tag)
			}
			var err error
			if d.MediaType.IsIndex() {
				var idx *blobIndex
				if idx, err = p.blobIndex(d); err == nil {
					_, err = b.AddIndex(idx, tags, platformOf(d), src.V1Source)
				}
			} else {
				err = p.exportManifest(b, src.V1Source, d, tags)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("exporting %s: %w", ref, err)
			}
		}
	}
	b.Index.Manifests = index
	return b, src, nil
}

// exportManifest adds the image or artifact d names to b.
func (p *Pool) exportManifest(b *archive.Bundle, src archive.V1Source, d v1.Descriptor, tags []string) error {
	img, err := p.blobImage(d)
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	if !archive.IsArtifact(d, m) {
		_, err = b.AddImage(img, tags, src)
		return err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	if tag := archive.ArtifactTag(d.Annotations); tag != "" {
		tags = []string{tag}
	}
	if _, err := b.AddArtifact(raw, d.MediaType, tags); err != nil {
		return err
	}
	for _, ld := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if src[ld.Digest], err = partial.CompressedToLayer(blobLayer{p, ld}); err != nil {
			return err
		}
	}
	return nil
}

func platformOf(d v1.Descriptor) v1.Platform {
	if d.Platform != nil {
		return *d.Platform
	}
	return archive.HostPlatform()
}

// exportSource serves an export's blobs, decompressing the layers the pool stores compressed
// and rebuilding those it stores as content.
type exportSource struct {
	archive.V1Source
	pool *Pool
	held map[string]*packed
}

func (s exportSource) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	switch h, ok := s.held[b.Digest.Hex]; {
	case ok && h.content != nil:
		return s.pool.openContent(ctx, b.Digest.Hex, b.Size, *h.content), nil
	case ok:
		return s.pool.openRaw(h.Digest)
	}
	return s.V1Source.Open(ctx, b)
}

// find returns the index entries ref names, a whole bundle, one image of a bundle
// (NAME/TAG) or one image by tag, and the record holding them.
func find(records []*Record, ref string) ([]v1.Descriptor, *Record, error) {
	for _, r := range records {
		if r.Name == ref {
			return r.Index, r, nil
		}
		if tag, ok := strings.CutPrefix(ref, r.Name+"/"); ok {
			for _, d := range r.Index {
				if archive.RefTag(d.Annotations) == tag {
					return []v1.Descriptor{d}, r, nil
				}
			}
		}
	}
	for i := len(records) - 1; i >= 0; i-- {
		for _, d := range records[i].Index {
			if archive.RefTag(d.Annotations) == ref {
				return []v1.Descriptor{d}, records[i], nil
			}
		}
	}
	return nil, nil, fmt.Errorf("%s: %w (see ferry pool ls)", ref, ErrNoBundle)
}

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

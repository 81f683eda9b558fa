package archive

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/compress"
)

// Packing: a store that keeps layers compressed and unpacks them (a pool's OCI layout, a
// containerd) is better given an uncompressed layer compressed, and the manifests naming it
// rewritten to name the compressed blob. Configs stay as they are: the diffIDs are the same.
// ferry compresses with compress.NewGzipWriter, so the same layer always gives the same blob: a store
// that already holds it is found holding it by digest.

// gzipTypes maps uncompressed layer media types to their gzip counterparts.
var gzipTypes = map[types.MediaType]types.MediaType{
	types.DockerUncompressedLayer:        types.DockerLayer,
	types.OCIUncompressedLayer:           types.OCILayer,
	types.OCIUncompressedRestrictedLayer: types.OCIRestrictedLayer,
}

// GzipType returns the media type of a layer of type mt once compressed with gzip, or ""
// when mt is no uncompressed layer.
func GzipType(mt types.MediaType) types.MediaType { return gzipTypes[mt] }

// A Packed is a blob Pack compressed.
type Packed struct {
	Raw    v1.Hash // the digest of what was compressed
	Digest v1.Hash // the compressed blob's
	Size   int64   // the compressed blob's
}

// Pack compresses r into w as one gzip member at level, the way ferry compresses
// (compress.NewGzipWriter): the same content always gives the same blob.
func Pack(w io.Writer, r io.Reader, level int) (Packed, error) {
	raw := sha256.New()
	p, err := Compress(w, io.TeeReader(r, raw), level)
	p.Raw = HashOf(raw)
	return p, err
}

// Compress is Pack for a caller who hashes what it compresses already: Raw is left zero.
func Compress(w io.Writer, r io.Reader, level int) (Packed, error) {
	sum := sha256.New()
	counted := &countWriter{w: io.MultiWriter(w, sum)}
	zw, err := compress.NewGzipWriter(counted, level)
	if err != nil {
		return Packed{}, err
	}
	if _, err := io.Copy(zw, r); err != nil {
		zw.Close()
		return Packed{}, err
	}
	if err := zw.Close(); err != nil {
		return Packed{}, err
	}
	return Packed{Digest: HashOf(sum), Size: counted.n}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Redescribe rewrites the descriptors a manifest (its "layers") or an index (its
// "manifests") lists with with, keeping the rest of the JSON as it is (its keys sorted). It
// returns data itself, and false, when with changes nothing.
func Redescribe(data []byte, with func(v1.Descriptor) (v1.Descriptor, error)) ([]byte, bool, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return data, false, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
	}
	key := "layers"
	if _, ok := m["manifests"]; ok {
		key = "manifests"
	} else if _, ok := m[key]; !ok {
		return data, false, nil // neither: a config, say
	}
	var descs []v1.Descriptor
	if err := json.Unmarshal(m[key], &descs); err != nil {
		return data, false, fmt.Errorf("%w: %s: %w", ErrInvalidMetadata, key, err)
	}
	changed := false
	for i, d := range descs {
		nd, err := with(d)
		if err != nil {
			return data, false, err
		}
		if nd.Digest != d.Digest || nd.MediaType != d.MediaType || nd.Size != d.Size {
			descs[i], changed = nd, true
		}
	}
	if !changed {
		return data, false, nil
	}
	list, err := json.Marshal(descs)
	if err != nil {
		return data, false, err
	}
	m[key] = list
	out, err := json.Marshal(m)
	return out, err == nil, err
}

// Repack returns a copy of b in which every layer blob that with gives another descriptor
// for (the same layer stored otherwise: compressed, with the same diffID) is replaced by
// that blob, and every manifest and index that names it, directly or through others,
// rewritten to name the new one. The new layer blobs are present, with no Path: the source
// the copy is written or fed from must serve them. b itself is unchanged. A manifest whose
// JSON the bundle does not hold keeps its layers.
func (b *Bundle) Repack(with func(*Layer) (v1.Descriptor, bool)) (*Bundle, error) {
	repl := map[v1.Hash]v1.Descriptor{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if _, done := repl[l.Digest]; done {
				continue
			}
			if d, ok := with(l); ok && d.Digest != l.Digest {
				repl[l.Digest] = d
			}
		}
	}
	out := b.copyWith(func(blob *Blob) *Blob { return blob })
	if len(repl) == 0 {
		return out, nil
	}
	for _, d := range repl {
		if _, ok := out.blobs[d.Digest]; !ok {
			out.blobs[d.Digest] = &Blob{Digest: d.Digest, Size: d.Size}
		}
	}
	redone := map[v1.Hash]v1.Hash{} // manifests and indexes rewritten (or not): old digest → new
	var rewrite func(d v1.Descriptor) (v1.Descriptor, error)
	rewrite = func(d v1.Descriptor) (v1.Descriptor, error) {
		if nd, ok := redone[d.Digest]; ok {
			d.Digest, d.Size = nd, out.blobs[nd].Size
			return d, nil
		}
		blob := b.blobs[d.Digest]
		if blob == nil || blob.Data == nil {
			return d, nil
		}
		data, changed, err := Redescribe(blob.Data, func(c v1.Descriptor) (v1.Descriptor, error) {
			if r, ok := repl[c.Digest]; ok {
				c.MediaType, c.Digest, c.Size = r.MediaType, r.Digest, r.Size
				return c, nil
			}
			if c.MediaType.IsIndex() || c.MediaType.IsImage() {
				return rewrite(c)
			}
			return c, nil
		})
		if err != nil {
			return d, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		if !changed {
			redone[d.Digest] = d.Digest
			return d, nil
		}
		nb := &Blob{Digest: sha256Hash(data), Size: int64(len(data)), Data: data}
		nb = out.AddBlob(nb)
		redone[d.Digest] = nb.Digest
		d.Digest, d.Size = nb.Digest, nb.Size
		return d, nil
	}
	out.Index.Manifests = make([]v1.Descriptor, len(b.Index.Manifests))
	for i, d := range b.Index.Manifests {
		var err error
		if out.Index.Manifests[i], err = rewrite(d); err != nil {
			return nil, err
		}
	}
	for _, img := range out.Images {
		if img.Manifest == nil {
			continue
		}
		d, err := rewrite(v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: img.Manifest.Digest, Size: img.Manifest.Size})
		if err != nil {
			return nil, err
		}
		if d.Digest == img.Manifest.Digest {
			continue
		}
		img.Manifest = out.blobs[d.Digest]
		layers := make([]*Layer, len(img.Layers))
		for i, l := range img.Layers {
			layers[i] = l
			if r, ok := repl[l.Digest]; ok {
				layers[i] = &Layer{Blob: out.blobs[r.Digest], DiffID: l.DiffID, MediaType: r.MediaType}
			}
		}
		img.Layers = layers
	}
	return out, nil
}

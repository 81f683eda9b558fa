package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/compress"
)

// A Bundle is the verified content of one bundle: the images docker loads and the OCI index,
// with every blob either present or, in a thin bundle, expected to exist at the destination.
type Bundle struct {
	// Images are the images of manifest.json, in order: one per image, each with its tags.
	Images []*Image
	// Index is the OCI index of index.json. Its entries may reach beyond Images (for example
	// the other platforms of a multi-platform image).
	Index v1.IndexManifest
	// Artifacts are the manifests of the OCI part that are not images: signatures,
	// attestations, SBOMs and other artifacts, with what they refer to.
	Artifacts []*Artifact
	// Codec is the outer compression the bundle was read with.
	Codec compress.Codec
	// Unreferenced counts the entries of the bundle read that nothing in it refers to:
	// ignored, and never passed on to a store. UnreferencedNames names them, sorted, as far
	// as the reader kept names (those of the first entries, up to a budget).
	Unreferenced      int
	UnreferencedNames []string

	blobs map[v1.Hash]*Blob
	// artifactOf finds an artifact by its manifest's digest, referring by its subject.
	artifactOf map[v1.Hash]*Artifact
	referring  map[v1.Hash][]*Artifact
}

// An Image is one image of a bundle.
type Image struct {
	RepoTags []string
	// Config's digest is the image ID.
	Config *Blob
	Layers []*Layer
	// Manifest is the image's manifest; for bundles without one (docker legacy), ferry
	// synthesizes an OCI manifest over the layers as they are.
	Manifest *Blob
	Platform *v1.Platform
	config   *v1.ConfigFile
}

// A Layer is a layer of an image: its blob as stored and the diffID of its uncompressed tar.
type Layer struct {
	*Blob
	DiffID    v1.Hash
	MediaType types.MediaType
}

// A Blob is content addressed by digest.
type Blob struct {
	Digest v1.Hash
	Size   int64
	// Path is the blob's entry in the bundle it was read from, if any.
	Path string
	// Missing marks a blob the bundle does not carry (a thin bundle's layers): the
	// destination is expected to hold it.
	Missing bool
	// Data holds small blobs (manifests, configs, small layers) in memory.
	Data []byte
	// codec is the blob's own compression; diffID the digest of its decompressed content,
	// diffErr why that could not be computed.
	codec   compress.Codec
	diffID  v1.Hash
	diffErr error
	// unkept: JSON the reader did not keep, the JSON before it having reached keptMax;
	// config is the parsed config, once a config.
	unkept bool
	config *v1.ConfigFile
}

// Present reports whether the bundle carries the blob.
func (b *Blob) Present() bool { return !b.Missing }

// ID returns the image ID, the digest of its config.
func (img *Image) ID() v1.Hash { return img.Config.Digest }

// ConfigFile returns the parsed config.
func (img *Image) ConfigFile() *v1.ConfigFile { return img.config }

// Blob returns the blob with digest h, present or expected.
func (b *Bundle) Blob(h v1.Hash) (*Blob, bool) {
	blob, ok := b.blobs[h]
	return blob, ok
}

// Blobs returns every blob of the bundle, present or expected, sorted by digest.
func (b *Bundle) Blobs() []*Blob {
	out := make([]*Blob, 0, len(b.blobs))
	for _, blob := range b.blobs {
		out = append(out, blob)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest.String() < out[j].Digest.String() })
	return out
}

// AddBlob records blob and returns the one the bundle holds for its digest: the one already
// known if any, else blob.
func (b *Bundle) AddBlob(blob *Blob) *Blob {
	if b.blobs == nil {
		b.blobs = map[v1.Hash]*Blob{}
	}
	if old, ok := b.blobs[blob.Digest]; ok {
		return old
	}
	b.blobs[blob.Digest] = blob
	return blob
}

// LayerOrder returns the layers of b's images in the images' order, each blob once (where
// images share it, the first image's layer), those missing included.
func (b *Bundle) LayerOrder() []*Layer {
	var out []*Layer
	seen := map[v1.Hash]bool{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// ChainIDs returns the chain ID of each layer: chain(L1) = diffID(L1),
// chain(Ln) = sha256(chain(Ln-1) + " " + diffID(Ln)). A docker store is keyed by these.
func ChainIDs(diffIDs []v1.Hash) []v1.Hash {
	out := make([]v1.Hash, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = sha256Hash([]byte(out[i-1].String() + " " + d.String()))
	}
	return out
}

// DiffIDs returns the diffIDs of the image's layers.
func (img *Image) DiffIDs() []v1.Hash {
	out := make([]v1.Hash, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.DiffID
	}
	return out
}

// blobPath is where a blob lives in a bundle and in an OCI layout.
func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

func sha256Hash(data []byte) v1.Hash { return sha256Of(sha256.Sum256(data)) }

func sha256Of(sum [32]byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// HashOf is the digest a sha256 hash has summed so far.
func HashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

func (b *Blob) String() string {
	if b.Path != "" {
		return fmt.Sprintf("%s (%s)", Quote(b.Path), b.Digest)
	}
	return b.Digest.String()
}

// Tree returns what d reaches in the bundle, in the order a registry takes it: the configs
// and layers, then the manifests, each after those it lists, d last. A manifest the bundle
// does not hold is an error.
func (b *Bundle) Tree(d v1.Descriptor) (blobs []*Blob, manifests []v1.Descriptor, err error) {
	seen := map[v1.Hash]bool{}
	var walk func(d v1.Descriptor, depth int) error
	walk = func(d v1.Descriptor, depth int) error {
		if seen[d.Digest] {
			return nil
		}
		seen[d.Digest] = true
		blob := b.blobs[d.Digest]
		if blob == nil || blob.Data == nil {
			return fmt.Errorf("%w: manifest %s", ErrMissingBlob, d.Digest)
		}
		if depth > maxDepth {
			return fmt.Errorf("%w: indexes nest over %d deep at %s", ErrInvalidMetadata, maxDepth, d.Digest)
		}
		if d.MediaType.IsIndex() {
			var idx v1.IndexManifest
			if err := json.Unmarshal(blob.Data, &idx); err != nil {
				return fmt.Errorf("%w: index %s: %w", ErrInvalidMetadata, d.Digest, err)
			}
			for _, c := range idx.Manifests {
				if err := walk(c, depth+1); err != nil {
					return err
				}
			}
		} else {
			var m v1.Manifest
			if err := json.Unmarshal(blob.Data, &m); err != nil {
				return fmt.Errorf("%w: manifest %s: %w", ErrInvalidMetadata, d.Digest, err)
			}
			for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
				if lb := b.blobs[l.Digest]; lb != nil && !seen[l.Digest] {
					seen[l.Digest] = true
					blobs = append(blobs, lb)
				} else if lb == nil {
					return fmt.Errorf("%w: blob %s of manifest %s", ErrMissingBlob, l.Digest, d.Digest)
				}
			}
		}
		manifests = append(manifests, d)
		return nil
	}
	if err := walk(d, 0); err != nil {
		return nil, nil, err
	}
	return blobs, manifests, nil
}

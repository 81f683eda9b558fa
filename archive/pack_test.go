package archive

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/compress"
)

// packedSource serves the blobs Pack made, and the rest from another source.
type packedSource struct {
	BlobSource
	packed map[v1.Hash][]byte
}

func (s packedSource) Open(ctx context.Context, b *Blob) (io.ReadCloser, error) {
	if data, ok := s.packed[b.Digest]; ok {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return s.BlobSource.Open(ctx, b)
}

// TestRepack compresses the uncompressed layers of an image that is also in an index: the
// manifest and the index are rewritten, the config is not, the same layer gives the same
// blob every time, and the repacked bundle reads back verified (digests and diffIDs).
func TestRepack(t *testing.T) {
	raw := static.NewLayer([]byte(strings.Repeat("uncompressed tar, as docker saves it\n", 1000)), types.OCIUncompressedLayer)
	gz, err := random.Layer(1024, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, gz, raw)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	b, src := &Bundle{}, V1Source{}
	if _, err := b.AddIndex(idx, []string{"app:1"}, v1.Platform{OS: "linux", Architecture: "amd64"}, src); err != nil {
		t.Fatal(err)
	}
	packed := map[v1.Hash][]byte{}
	repack := func() *Bundle {
		out, err := b.Repack(func(l *Layer) (v1.Descriptor, bool) {
			if GzipType(l.MediaType) == "" {
				return v1.Descriptor{}, false
			}
			rc, err := src.Open(context.Background(), l.Blob)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var buf bytes.Buffer
			pk, err := Pack(&buf, rc, compress.DefaultLevel)
			if err != nil || pk.Raw != l.Digest {
				t.Fatalf("Pack: %+v, %v", pk, err)
			}
			packed[pk.Digest] = buf.Bytes()
			return v1.Descriptor{MediaType: GzipType(l.MediaType), Digest: pk.Digest, Size: pk.Size}, true
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	rb := repack()
	img0, rimg := b.Images[0], rb.Images[0]
	if rimg.Config != img0.Config || rimg.Manifest.Digest == img0.Manifest.Digest {
		t.Errorf("config %s → %s, manifest %s → %s: want the config kept and the manifest rewritten",
			img0.Config.Digest, rimg.Config.Digest, img0.Manifest.Digest, rimg.Manifest.Digest)
	}
	if rimg.Layers[0].Blob != img0.Layers[0].Blob || rimg.Layers[1].Digest == img0.Layers[1].Digest ||
		rimg.Layers[1].MediaType != types.OCILayer || rimg.Layers[1].DiffID != img0.Layers[1].DiffID {
		t.Errorf("layers %+v → %+v", img0.Layers, rimg.Layers)
	}
	if rb.Index.Manifests[0].Digest == b.Index.Manifests[0].Digest || rb.Index.Manifests[0].Annotations["org.opencontainers.image.ref.name"] == "" {
		t.Errorf("index entry %+v → %+v: want the index rewritten, its annotations kept", b.Index.Manifests[0], rb.Index.Manifests[0])
	}
	if b.Images[0].Layers[1].MediaType != types.OCIUncompressedLayer {
		t.Error("Repack changed the bundle it copied")
	}
	if again := repack(); again.Index.Manifests[0].Digest != rb.Index.Manifests[0].Digest {
		t.Errorf("repacked twice: %s, then %s", rb.Index.Manifests[0].Digest, again.Index.Manifests[0].Digest)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, rb, packedSource{src, packed}, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := Read(context.Background(), &buf, Discard, ReadOptions{})
	if err != nil {
		t.Fatalf("reading the repacked bundle: %v", err)
	}
	if got.Images[0].Manifest.Digest != rimg.Manifest.Digest || got.Images[0].Layers[1].Digest != rimg.Layers[1].Digest {
		t.Errorf("read back %s with layer %s", got.Images[0].Manifest.Digest, got.Images[0].Layers[1].Digest)
	}
}

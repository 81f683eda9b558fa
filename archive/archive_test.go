package archive

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/testenv"
)

// testImages returns two random images sharing a base layer.
func testImages(t testing.TB) (v1.Image, v1.Image) {
	_, imgs := testenv.RandomImages(t, 4096, 2048, 2)
	return imgs[0], imgs[1]
}

// writeBundle writes the images as one bundle.
func writeBundle(t testing.TB, opts WriteOptions, imgs map[string]v1.Image) []byte {
	t.Helper()
	b := &Bundle{}
	src := V1Source{}
	for _, tag := range slices.Sorted(maps.Keys(imgs)) {
		if _, err := b.AddImage(imgs[tag], []string{tag}, src); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, b, src, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	a, b := testImages(t)
	imgs := map[string]v1.Image{"example.com/a:1": a, "example.com/b:2": b}
	plain := writeBundle(t, WriteOptions{}, imgs)
	for _, codec := range []compress.Codec{compress.None, compress.Gzip, compress.Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			data := writeBundle(t, WriteOptions{Encoder: compress.Encoder{Codec: codec}}, imgs)
			if codec != compress.None { // the members decompress, with the codec's own tool, to the plain bundle
				tool := exec.Command(testenv.Require(t, codec.String()), "-dc")
				tool.Stdin = bytes.NewReader(data)
				if out, err := tool.Output(); err != nil || !bytes.Equal(out, plain) {
					t.Fatalf("%s -dc of the bundle: %v, %d bytes, want the plain bundle's %d", codec, err, len(out), len(plain))
				}
			}
			if again := writeBundle(t, WriteOptions{Encoder: compress.Encoder{Codec: codec}}, imgs); !bytes.Equal(data, again) {
				t.Fatal("writing the same images twice gave different bytes")
			}
			bundle, err := Read(context.Background(), bytes.NewReader(data), Discard, ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if bundle.Codec != codec || len(bundle.Images) != 2 {
				t.Fatalf("read %d images with codec %s", len(bundle.Images), bundle.Codec)
			}
			for _, img := range bundle.Images {
				want := imgs[img.RepoTags[0]]
				id, _ := want.ConfigName()
				if img.ID() != id {
					t.Errorf("%s: ID %s, want %s", img.RepoTags[0], img.ID(), id)
				}
				d, _ := want.Digest()
				if img.Manifest.Digest != d {
					t.Errorf("%s: manifest %s, want %s", img.RepoTags[0], img.Manifest.Digest, d)
				}
			}
			if len(bundle.Images[0].Layers) != 2 || bundle.Images[0].Layers[0].Blob != bundle.Images[1].Layers[0].Blob {
				t.Error("the shared base layer is not one blob")
			}

			if codec != compress.None {
				return
			}
			// go-containerregistry's tarball reader is an independent reader of manifest.json.
			path := filepath.Join(t.TempDir(), "b.tar")
			os.WriteFile(path, data, 0o644)
			tag, _ := name.NewTag("example.com/b:2")
			got, err := tarball.ImageFromPath(path, &tag)
			if err != nil {
				t.Fatal(err)
			}
			gotID, _ := got.ConfigName()
			wantID, _ := b.ConfigName()
			if gotID != wantID {
				t.Fatalf("ggcr reads ID %s, want %s", gotID, wantID)
			}
			layers, _ := got.Layers()
			for _, l := range layers {
				rc, err := l.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

// TestWriteOrderIndependent: docker save lists images in no fixed order; the bundle must
// not depend on it.
func TestWriteOrderIndependent(t *testing.T) {
	a, b := testImages(t)
	write := func(first, second v1.Image, firstTag, secondTag string) []byte {
		bundle, src := &Bundle{}, V1Source{}
		bundle.AddImage(first, []string{firstTag}, src)
		bundle.AddImage(second, []string{secondTag}, src)
		var buf bytes.Buffer
		if err := Write(context.Background(), &buf, bundle, src, WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	if !bytes.Equal(write(a, b, "x/a:1", "x/b:1"), write(b, a, "x/b:1", "x/a:1")) {
		t.Fatal("the order images were added in changed the bundle")
	}
}

// TestLayerOrder: the layers of the images in order, a layer two images share once; Feed
// hands blobs on in that order, the configs and manifests after them.
func TestLayerOrder(t *testing.T) {
	a, b := testImages(t)
	bundle, src := &Bundle{}, V1Source{}
	for _, img := range []v1.Image{a, b} {
		if _, err := bundle.AddImage(img, nil, src); err != nil {
			t.Fatal(err)
		}
	}
	var want []v1.Hash
	for _, img := range []v1.Image{a, b} {
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			if d, _ := l.Digest(); !slices.Contains(want, d) {
				want = append(want, d)
			}
		}
	}
	var got []v1.Hash
	for _, l := range bundle.LayerOrder() {
		got = append(got, l.Digest)
	}
	if len(want) != 3 || !slices.Equal(got, want) {
		t.Fatalf("LayerOrder: %v, want %v (the shared base once, then each image's own)", got, want)
	}
	var fed []v1.Hash
	for _, blob := range blobOrder(bundle) {
		fed = append(fed, blob.Digest)
	}
	if !slices.Equal(fed[:len(want)], want) || len(fed) != len(want)+4 {
		t.Errorf("Feed's order %v, want the layers %v first, then two configs and two manifests", fed, want)
	}
}

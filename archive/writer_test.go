package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"slices"
	"testing"

	"github.com/ferrytool/ferry/compress"
)

// tarNames lists the entries of the tar stream (gzip-compressed if codec says) in data, up
// to where it stops.
func tarNames(t *testing.T, data []byte, codec compress.Codec) []string {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	if codec == compress.Gzip {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var names []string
	for tr := tar.NewReader(r); ; {
		h, err := tr.Next()
		if err != nil {
			return names
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return names // cut inside this entry's body
		}
		names = append(names, h.Name)
	}
}

// TestWriterPhases: a Writer's Metadata gives the reader the entries kept in memory
// (metadata, configs) and no layer, Blobs every entry, End the end; Begin, before the bundle
// is known, its first entry; in all, the bundle Write gives, entry for entry.
func TestWriterPhases(t *testing.T) {
	img, _ := testImages(t)
	b, src := &Bundle{}, V1Source{}
	if _, err := b.AddImage(img, []string{"phases:1"}, src); err != nil {
		t.Fatal(err)
	}
	layers := map[string]bool{}
	for _, l := range b.Images[0].Layers {
		layers[blobPath(l.Digest)] = true
	}
	for _, codec := range []compress.Codec{compress.None, compress.Gzip} {
		t.Run(codec.String(), func(t *testing.T) {
			var whole, buf bytes.Buffer
			if err := Write(context.Background(), &whole, b, src, WriteOptions{Encoder: compress.Encoder{Codec: codec}}); err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(&buf, WriteOptions{Encoder: compress.Encoder{Codec: codec}})
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Begin(); err != nil {
				t.Fatal(err)
			}
			if got := tarNames(t, buf.Bytes(), codec); !slices.Equal(got, []string{"oci-layout"}) {
				t.Fatalf("Begin wrote %v", got)
			}
			if err := w.Metadata(b); err != nil {
				t.Fatal(err)
			}
			atData := tarNames(t, buf.Bytes(), codec)
			for _, want := range []string{"manifest.json", blobPath(b.Images[0].Config.Digest)} {
				if !slices.Contains(atData, want) {
					t.Errorf("after Metadata, %v: %s missing", atData, want)
				}
			}
			for _, name := range atData {
				if layers[name] {
					t.Errorf("layer %s written by Metadata", name)
				}
			}
			if err := w.Blobs(context.Background(), src); err != nil {
				t.Fatal(err)
			}
			if err := w.End(); err != nil {
				t.Fatal(err)
			}
			if want, got := tarNames(t, whole.Bytes(), codec), tarNames(t, buf.Bytes(), codec); !slices.Equal(got, want) || len(got) != len(atData)+len(layers) {
				t.Errorf("in phases %v, Write %v, want the same (%d after Metadata, %d layers)", got, want, len(atData), len(layers))
			}
			if _, err := Read(context.Background(), bytes.NewReader(buf.Bytes()), Discard, ReadOptions{}); err != nil {
				t.Errorf("reading the bundle written in phases: %v", err)
			}
		})
	}
}

// TestWriteAdaptiveCodec: an Adaptive of another codec than the bundle's is refused.
func TestWriteAdaptiveCodec(t *testing.T) {
	opts := WriteOptions{Encoder: compress.Encoder{Codec: compress.Zstd, Adapt: compress.NewAdaptive(compress.Gzip, nil, false)}}
	if err := Write(context.Background(), io.Discard, &Bundle{}, V1Source{}, opts); err == nil {
		t.Error("writing zstd with a gzip Adaptive: no error")
	}
}

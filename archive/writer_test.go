package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// tarNames lists the entries of the tar stream (gzip-compressed if codec says) in data, up
// to where it stops.
func tarNames(t *testing.T, data []byte, codec Codec) []string {
	t.Helper()
	var r io.Reader = bytes.NewReader(data)
	if codec == Gzip {
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
	for _, codec := range []Codec{None, Gzip} {
		t.Run(codec.String(), func(t *testing.T) {
			var whole, buf bytes.Buffer
			if err := Write(context.Background(), &whole, b, src, WriteOptions{Codec: codec}); err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(&buf, WriteOptions{Codec: codec})
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

// spoolBundle reads the bundle data into a new spool encoding as opts say.
func spoolBundle(t *testing.T, data []byte, opts WriteOptions) (*Spool, *Bundle) {
	t.Helper()
	spool, err := NewSpool(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	b, err := Read(context.Background(), bytes.NewReader(data), spool, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return spool, b
}

// TestSpoolEncodedSizes: a spool staging plain content knows what Write made of each blob it
// encoded, and the ratio; sizes it cannot know are not guessed.
func TestSpoolEncodedSizes(t *testing.T) {
	img, _ := testImages(t)
	spool, b := spoolBundle(t, writeBundle(t, WriteOptions{}, map[string]v1.Image{"spool:1": img}), WriteOptions{})
	gz := WriteOptions{Codec: Gzip}
	layer := b.Images[0].Layers[0].Blob
	if _, ok := spool.EncodedSize(layer, gz); ok {
		t.Error("an encoded size before any was written")
	}
	if _, ok := spool.EncodedRatio(gz); ok {
		t.Error("a ratio before any blob was encoded")
	}
	var out bytes.Buffer
	if err := Write(context.Background(), &out, b, spool, gz); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, l := range b.Images[0].Layers {
		n, ok := spool.EncodedSize(l.Blob, gz)
		if !ok || n <= 0 {
			t.Fatalf("layer %s: encoded size %d, %v", l.Digest, n, ok)
		}
		sum += n
	}
	if sum >= int64(out.Len()) {
		t.Errorf("layers encoded to %d bytes, the whole bundle is %d", sum, out.Len())
	}
	if r, ok := spool.EncodedRatio(gz); !ok || r <= 0 {
		t.Errorf("ratio %v, %v", r, ok)
	}
	if _, ok := spool.EncodedSize(layer, WriteOptions{Codec: Zstd}); ok {
		t.Error("an encoded size for a codec never written")
	}
}

// TestSpoolFollows: an entry opened while it is staged reads whole as it comes; one whose
// staging fails reads that failure; a name not staged is missing.
func TestSpoolFollows(t *testing.T) {
	ctx := context.Background()
	for _, codec := range []Codec{None, Gzip} {
		spool, err := NewSpool(t.TempDir(), WriteOptions{Codec: codec})
		if err != nil {
			t.Fatal(err)
		}
		defer spool.Close()
		data := randomText(3 << 20)
		blob := &Blob{Path: "layer", Size: int64(len(data))}
		if _, err := spool.Open(ctx, blob); !errors.Is(err, ErrMissingBlob) {
			t.Errorf("%s: opening a blob before its staging began: %v", codec, err)
		}
		pr, pw := io.Pipe()
		staged := make(chan error)
		go func() { staged <- spool.Entry(ctx, Entry{Name: "layer", Size: int64(len(data))}, pr) }()
		pw.Write(data[:1<<20]) // read by the spool: its staging has begun
		got := make(chan []byte)
		go func() { // opened as the entry is staged
			rc, err := spool.Open(ctx, blob)
			if err != nil {
				t.Error(err)
				got <- nil
				return
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Error(err)
			}
			got <- b
		}()
		for chunk := range slices.Chunk(data[1<<20:], 1<<20) {
			pw.Write(chunk)
			time.Sleep(20 * time.Millisecond) // the reader catches up and waits
		}
		pw.Close()
		if err := <-staged; err != nil {
			t.Fatal(err)
		}
		if b := <-got; !bytes.Equal(b, data) {
			t.Errorf("%s: read %d bytes following the staging, want the %d staged", codec, len(b), len(data))
		}

		pr, pw = io.Pipe()
		go func() { staged <- spool.Entry(ctx, Entry{Name: "cut", Size: int64(len(data))}, pr) }()
		pw.Write(data[:1<<20])
		rc, err := spool.Open(ctx, &Blob{Path: "cut", Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		pw.CloseWithError(errors.New("source cut"))
		if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "source cut") {
			t.Errorf("%s: reading an entry whose staging failed: %v", codec, err)
		}
		rc.Close()
		<-staged

		if codec == Gzip { // encoded bytes are copied unchecked: only once staged whole
			pr, pw = io.Pipe()
			go func() { staged <- spool.Entry(ctx, Entry{Name: "enc", Size: int64(len(data))}, pr) }()
			pw.Write(data[:1<<20])
			opened := make(chan io.ReadCloser, 1)
			go func() {
				rc, ok, err := spool.OpenEncoded(ctx, &Blob{Path: "enc", Size: int64(len(data))}, Gzip, 0)
				if err != nil || !ok {
					t.Errorf("OpenEncoded: %v, %v", ok, err)
				}
				opened <- rc
			}()
			select {
			case <-opened:
				t.Error("OpenEncoded returned while the entry was being staged")
			case <-time.After(100 * time.Millisecond):
			}
			pw.Write(data[1<<20:])
			pw.Close()
			if err := <-staged; err != nil {
				t.Fatal(err)
			}
			if rc := <-opened; rc != nil {
				zr, _, err := decompress(rc, false)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(zr); err != nil || !bytes.Equal(b, data) {
					t.Errorf("the encoded entry: %d bytes, %v", len(b), err)
				}
				rc.Close()
			}
		}

		if _, err := spool.Open(ctx, &Blob{Path: "never"}); !errors.Is(err, ErrMissingBlob) {
			t.Errorf("%s: opening a blob never staged: %v", codec, err)
		}
	}
}

package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/testenv"
)

// bundleOf writes a plain bundle of a random image tagged tag.
func bundleOf(t *testing.T, tag string) []byte {
	t.Helper()
	_, imgs := testenv.RandomImages(t, 4096, 2048, 1)
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(imgs[0], []string{tag}, src); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.Write(context.Background(), &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// spoolBundle reads the bundle data into a new spool encoding as opts say.
func spoolBundle(t *testing.T, data []byte, opts archive.WriteOptions) (*Spool, *archive.Bundle) {
	t.Helper()
	spool, err := New(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	b, err := archive.Read(context.Background(), bytes.NewReader(data), spool, archive.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return spool, b
}

// TestSpoolEncodedSizes: a spool staging plain content knows what Write made of each blob it
// encoded, and the ratio; sizes it cannot know are not guessed.
func TestSpoolEncodedSizes(t *testing.T) {
	spool, b := spoolBundle(t, bundleOf(t, "spool:1"), archive.WriteOptions{})
	gz := archive.WriteOptions{Encoder: compress.Encoder{Codec: compress.Gzip}}
	layer := b.Images[0].Layers[0].Blob
	if _, ok := spool.EncodedSize(layer, gz); ok {
		t.Error("an encoded size before any was written")
	}
	if _, ok := spool.EncodedRatio(gz); ok {
		t.Error("a ratio before any blob was encoded")
	}
	var out bytes.Buffer
	if err := archive.Write(context.Background(), &out, b, spool, gz); err != nil {
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
	if _, ok := spool.EncodedSize(layer, archive.WriteOptions{Encoder: compress.Encoder{Codec: compress.Zstd}}); ok {
		t.Error("an encoded size for a codec never written")
	}
}

// TestSpoolFollows: an entry opened while it is staged reads whole as it comes; one whose
// staging fails reads that failure; a name not staged is missing.
func TestSpoolFollows(t *testing.T) {
	ctx := context.Background()
	for _, codec := range []compress.Codec{compress.None, compress.Gzip} {
		spool, err := New(t.TempDir(), archive.WriteOptions{Encoder: compress.Encoder{Codec: codec}})
		if err != nil {
			t.Fatal(err)
		}
		defer spool.Close()
		data := testenv.RandomText(3 << 20)
		blob := &archive.Blob{Path: "layer", Size: int64(len(data))}
		if _, err := spool.Open(ctx, blob); !errors.Is(err, archive.ErrMissingBlob) {
			t.Errorf("%s: opening a blob before its staging began: %v", codec, err)
		}
		pr, pw := io.Pipe()
		staged := make(chan error)
		go func() { staged <- spool.Entry(ctx, archive.Entry{Name: "layer", Size: int64(len(data))}, pr) }()
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
		go func() { staged <- spool.Entry(ctx, archive.Entry{Name: "cut", Size: int64(len(data))}, pr) }()
		pw.Write(data[:1<<20])
		rc, err := spool.Open(ctx, &archive.Blob{Path: "cut", Size: int64(len(data))})
		if err != nil {
			t.Fatal(err)
		}
		pw.CloseWithError(errors.New("source cut"))
		if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "source cut") {
			t.Errorf("%s: reading an entry whose staging failed: %v", codec, err)
		}
		rc.Close()
		<-staged

		if codec == compress.Gzip { // encoded bytes are copied unchecked: only once staged whole
			pr, pw = io.Pipe()
			go func() { staged <- spool.Entry(ctx, archive.Entry{Name: "enc", Size: int64(len(data))}, pr) }()
			pw.Write(data[:1<<20])
			opened := make(chan io.ReadCloser, 1)
			go func() {
				rc, ok, err := spool.OpenEncoded(ctx, &archive.Blob{Path: "enc", Size: int64(len(data))}, compress.Gzip, 0)
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
				zr, _, err := compress.NewReader(rc)
				if err != nil {
					t.Fatal(err)
				}
				if b, err := io.ReadAll(zr); err != nil || !bytes.Equal(b, data) {
					t.Errorf("the encoded entry: %d bytes, %v", len(b), err)
				}
				rc.Close()
			}
		}

		if _, err := spool.Open(ctx, &archive.Blob{Path: "never"}); !errors.Is(err, archive.ErrMissingBlob) {
			t.Errorf("%s: opening a blob never staged: %v", codec, err)
		}
	}
}

// TestSpoolReadAt: a blob staged plain reads at any offset (a content rebuild reads a layer
// in place), waiting for its staging to come that far.
func TestSpoolReadAt(t *testing.T) {
	ctx := context.Background()
	spool, err := New(t.TempDir(), archive.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer spool.Close()
	data := testenv.RandomText(3 << 20)
	pr, pw := io.Pipe()
	staged := make(chan error)
	go func() { staged <- spool.Entry(ctx, archive.Entry{Name: "layer", Size: int64(len(data))}, pr) }()
	pw.Write(data[:1<<20])
	rc, err := spool.Open(ctx, &archive.Blob{Path: "layer", Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ra, ok := rc.(io.ReaderAt)
	if !ok {
		t.Fatalf("a blob staged plain opens as %T, no io.ReaderAt", rc)
	}
	off := int64(5 << 19)
	got := make(chan []byte)
	go func() {
		b := make([]byte, 1000)
		n, err := ra.ReadAt(b, off)
		if err != nil {
			t.Error(err)
		}
		got <- b[:n]
	}()
	select {
	case <-got:
		t.Error("ReadAt past what was staged returned")
	case <-time.After(100 * time.Millisecond):
	}
	pw.Write(data[1<<20:])
	pw.Close()
	if err := <-staged; err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, data[off:off+1000]) {
		t.Errorf("ReadAt gave %d bytes, not the staged ones", len(b))
	}
	b := make([]byte, 100)
	if n, err := ra.ReadAt(b, int64(len(data))-10); n != 10 || err != io.EOF || !bytes.Equal(b[:n], data[len(data)-10:]) {
		t.Errorf("ReadAt across the end: %d bytes, %v", n, err)
	}
}

// TestWriteAdaptive: Write with an Adaptive copies what a spool holds encoded at any level,
// encodes what it holds plain, and the spool learns the sizes for the adapting writes only.
func TestWriteAdaptive(t *testing.T) {
	data := bundleOf(t, "adapt:1")
	for _, spooled := range []archive.WriteOptions{{}, {Encoder: compress.Encoder{Codec: compress.Gzip, Level: 6}}} {
		spool, b := spoolBundle(t, data, spooled)
		// Level: what is not a blob from the source (metadata, configs) is written at it.
		adapt := archive.WriteOptions{Encoder: compress.Encoder{Codec: compress.Gzip, Level: 6, Adapt: compress.NewAdaptive(compress.Gzip, compress.AdaptiveLevels(compress.Gzip), true)}}
		var out bytes.Buffer
		if err := archive.Write(context.Background(), &out, b, spool, adapt); err != nil {
			t.Fatal(err)
		}
		if _, err := archive.Read(context.Background(), bytes.NewReader(out.Bytes()), archive.Discard, archive.ReadOptions{}); err != nil {
			t.Fatalf("spooled %s: reading the bundle written: %v", spooled.Codec, err)
		}
		layer := b.Images[0].Layers[0].Blob
		n, ok := spool.EncodedSize(layer, adapt)
		if !ok || n <= 0 {
			t.Errorf("spooled %s: encoded size %d, %v (the layer holds %d bytes)", spooled.Codec, n, ok, layer.Size)
		}
		if _, ok := spool.EncodedSize(layer, archive.WriteOptions{Encoder: compress.Encoder{Codec: compress.Gzip, Level: 3}}); ok {
			t.Errorf("spooled %s: an encoded size at a level never written", spooled.Codec)
		}
		if spooled.Codec == compress.Gzip {
			// Copied as spooled: the bundle is the one Write gives at the spool's level.
			var fixed bytes.Buffer
			if err := archive.Write(context.Background(), &fixed, b, spool, spooled); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), fixed.Bytes()) {
				t.Errorf("spooled at level 6: the adapting write differs from the level-6 write: not copied")
			}
		}
	}
}

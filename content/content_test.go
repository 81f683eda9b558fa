package content

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// layers serves the layers of images by diffID: the store a delta's base is read from.
type layers map[v1.Hash]v1.Layer

func layersOf(t testing.TB, imgs ...v1.Image) layers {
	out := layers{}
	for _, img := range imgs {
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			d, _ := l.DiffID()
			out[d] = l
		}
	}
	return out
}

func (s layers) Open(_ context.Context, want []Layer, each func(int, io.Reader) error) (func(), error) {
	for i, l := range want {
		vl, ok := s[l.DiffID]
		if !ok {
			return nil, fmt.Errorf("%w: layer %s", archive.ErrMissingBlob, l.DiffID)
		}
		rc, err := vl.Uncompressed()
		if err != nil {
			return nil, err
		}
		err = each(i, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return func() {}, nil
}

// inPlace layers are read in place, as an OCI layout's uncompressed blobs are.
type inPlace layers

func (s inPlace) Open(ctx context.Context, want []Layer, each func(int, io.Reader) error) (func(), error) {
	return layers(s).Open(ctx, want, func(i int, r io.Reader) error {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return each(i, bytes.NewReader(data))
	})
}

// indexOf indexes the layers of imgs.
func indexOf(t testing.TB, imgs ...v1.Image) *Index {
	x := NewIndex()
	for d, l := range layersOf(t, imgs...) {
		rc, _ := l.Uncompressed()
		got, err := x.Add(t.Context(), rc)
		rc.Close()
		if err != nil || got != d {
			t.Fatalf("indexing %s: %v (got %s)", d, err, got)
		}
		x.Name(d, "old")
	}
	return x
}

func bundleOf(t testing.TB, imgs ...v1.Image) (*archive.Bundle, archive.V1Source) {
	b, src := &archive.Bundle{}, archive.V1Source{}
	for i, img := range imgs {
		if _, err := b.AddImage(img, []string{fmt.Sprintf("app:%d", i)}, src); err != nil {
			t.Fatal(err)
		}
	}
	return b, src
}

// TestDelta: the rebuild of an image set whose every layer has a new digest costs what its
// content gained, and gives every layer back byte for byte from the old set's layers.
func TestDelta(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 2)
	x := indexOf(t, old...)
	b, src := bundleOf(t, rebuilt...)
	var delta bytes.Buffer
	sum, err := Make(t.Context(), &delta, b, src, x, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var full int64
	for _, l := range b.LayerOrder() {
		full += l.Size
	}
	t.Logf("%d layers, %d bytes: a delta of %d bytes (%+v)", len(b.LayerOrder()), full, delta.Len(), *sum)
	if sum.Rebuilt != 3 || sum.Whole != 0 || int64(delta.Len()) > full/20 {
		t.Errorf("delta of %d bytes for %d (%+v): want 3 layers rebuilt, in under a twentieth", delta.Len(), full, *sum)
	}
	if !IsDelta(bufio.NewReader(bytes.NewReader(delta.Bytes()))) {
		t.Error("IsDelta does not know a delta")
	}

	for _, base := range []Base{layersOf(t, old...), inPlace(layersOf(t, old...))} {
		rb, err := Rebuild(t.Context(), bytes.NewReader(delta.Bytes()), base, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = archive.Write(t.Context(), &out, rb.Bundle, rb.Src, archive.WriteOptions{})
		rb.Close()
		if err != nil {
			t.Fatalf("%T: %v", base, err)
		}
		got, err := archive.Read(t.Context(), &out, archive.Discard, archive.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i, img := range got.Images {
			if img.ID() != b.Images[i].ID() || img.Manifest.Digest != b.Images[i].Manifest.Digest {
				t.Errorf("%T: image %d rebuilt as %s, want %s", base, i, img.ID(), b.Images[i].ID())
			}
		}
	}
}

// TestDeltaFaults: a rebuild fails, naming what, when the store lacks a layer the delta
// copies from, when a layer of the store is not what the delta expects, and when the delta's
// new content was damaged on the way.
func TestDeltaFaults(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 1)
	b, src := bundleOf(t, rebuilt...)
	var delta bytes.Buffer
	if _, err := Make(t.Context(), &delta, b, src, indexOf(t, old...), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	base := layersOf(t, old...)
	lacking, wrong := layers{}, layers{}
	first := true
	for d, l := range base {
		if first {
			first = false
			wrong[d] = base[otherThan(base, d)]
			continue
		}
		lacking[d], wrong[d] = l, l
	}
	damaged := bytes.Clone(delta.Bytes())
	at, size := entryAt(t, damaged, packName)
	damaged[at+size/2] ^= 0x40
	for _, c := range []struct {
		name  string
		delta []byte
		base  Base
		want  error
	}{
		{"a layer the store lacks", delta.Bytes(), lacking, archive.ErrMissingBlob},
		{"a layer of the store not what the delta expects", delta.Bytes(), wrong, archive.ErrDiffIDMismatch},
		{"a layer of the store not what the delta expects, read in place", delta.Bytes(), inPlace(wrong), archive.ErrDiffIDMismatch},
		{"a layer the store lacks, read in place", delta.Bytes(), inPlace(lacking), archive.ErrMissingBlob},
		{"new content damaged", damaged, base, archive.ErrCorrupt},
	} {
		t.Run(c.name, func(t *testing.T) {
			rb, err := Rebuild(t.Context(), bytes.NewReader(c.delta), c.base, t.TempDir())
			if err == nil {
				err = archive.Write(t.Context(), io.Discard, rb.Bundle, rb.Src, archive.WriteOptions{})
				rb.Close()
			}
			if !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}

// entryAt returns where the data of a tar's entry name begins, and its size.
func entryAt(t *testing.T, data []byte, name string) (int64, int64) {
	r := bytes.NewReader(data)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("no %s in the delta: %v", name, err)
		}
		if hdr.Name == name {
			return int64(len(data)) - int64(r.Len()), hdr.Size
		}
	}
}

func otherThan(m layers, d v1.Hash) v1.Hash {
	for k := range m {
		if k != d {
			return k
		}
	}
	return d
}

// fuzzDeltas makes small content deltas: one against an empty index (everything new) and
// one against its own layers (everything held).
func fuzzDeltas(t testing.TB) [][]byte {
	b, src := &archive.Bundle{}, archive.V1Source{}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(testenv.FilesTar(map[string]string{"a": "one", "b/c": strings.Repeat("two ", 9000)}), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddImage(img, []string{"app:1"}, src); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, x := range []*Index{NewIndex(), nil} {
		if x == nil {
			x = NewIndex()
			ls, _ := img.Layers()
			for _, l := range ls {
				rc, _ := l.Uncompressed()
				x.Add(context.Background(), rc)
				rc.Close()
			}
		}
		var buf bytes.Buffer
		if _, err := Make(context.Background(), &buf, b, src, x, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	return out
}

// TestDeltaOddLayers: layers of any tar variant come back exactly — GNU sparse entries,
// PAX records, long names, the same path twice, a hard link, trailing garbage after the end
// — and a compressed layer (a registry's blob) travels whole.
func TestDeltaOddLayers(t *testing.T) {
	var odd bytes.Buffer
	tw := tar.NewWriter(&odd)
	big := bytes.Repeat([]byte("odd layers come back exactly "), 4000)
	for _, h := range []*tar.Header{
		{Name: strings.Repeat("long/", 40) + "name", Size: int64(len(big)), Format: tar.FormatGNU},
		{Name: "pax", Size: int64(len(big)), PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}, Format: tar.FormatPAX},
		{Name: "twice", Size: 5},
		{Name: "twice", Size: int64(len(big))},
		{Name: "link", Typeflag: tar.TypeLink, Linkname: "twice"},
	} {
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		h.Mode = 0o644
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(big[:h.Size])
	}
	tw.Close()
	odd.WriteString("trailing bytes after the end of the archive")
	sparse := gnuSparse(t)
	gz, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(odd.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image,
		static.NewLayer(odd.Bytes(), types.OCIUncompressedLayer),
		static.NewLayer(sparse, types.OCIUncompressedLayer), gz)
	if err != nil {
		t.Fatal(err)
	}
	b, src := bundleOf(t, img)
	var delta bytes.Buffer
	sum, err := Make(t.Context(), &delta, b, src, NewIndex(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Rebuilt != 2 || sum.Whole != 1 {
		t.Errorf("%+v: want the two uncompressed layers rebuilt, the gzip one whole", *sum)
	}
	rb, err := Rebuild(t.Context(), bytes.NewReader(delta.Bytes()), layers{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	if err := archive.Write(t.Context(), io.Discard, rb.Bundle, rb.Src, archive.WriteOptions{}); err != nil {
		t.Fatal(err) // Write checks every blob against its digest
	}
}

// gnuSparse returns a tar holding a GNU sparse file, as GNU tar --sparse writes it
// (Go's writer makes none).
func gnuSparse(t *testing.T) []byte {
	hdr := make([]byte, 512)
	copy(hdr, "sparse")
	copy(hdr[100:], "0000644\x00")
	copy(hdr[108:], "0000000\x00")
	copy(hdr[116:], "0000000\x00")
	copy(hdr[124:], "00000001000\x00") // 512 bytes of data stored
	copy(hdr[136:], "00000000000\x00")
	hdr[156] = 'S'
	copy(hdr[257:], "ustar  \x00")
	copy(hdr[386:], "00000010000\x00") // map: 512 bytes at offset 4096
	copy(hdr[398:], "00000001000\x00")
	copy(hdr[483:], "00000011000\x00") // real size 4608
	copy(hdr[148:], "        ")
	var sum int
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], fmt.Sprintf("%06o\x00 ", sum))
	out := append(hdr, bytes.Repeat([]byte{'s'}, 512)...)
	return append(out, make([]byte, 1024)...)
}

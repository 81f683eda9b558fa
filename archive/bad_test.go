package archive

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"

	"github.com/ferrytool/ferry/compress"
)

// A file is one entry of a hand-built tar.
type file struct {
	name string
	data []byte
	typ  byte   // tar.TypeReg when zero
	link string // a link's target
}

func reg(name string, data []byte) file { return file{name: name, data: data} }
func symlink(name, target string) file  { return file{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) file { return file{name: name, typ: tar.TypeLink, link: target} }

// files are the entries of a tar, in order.
type files []file

// tar writes the entries as a tar archive.
func (fs files) tar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range fs {
		hdr := &tar.Header{Name: f.name, Typeflag: cmp.Or(f.typ, tar.TypeReg), Linkname: f.link, Size: int64(len(f.data)), Mode: 0o644, ModTime: epoch}
		if f.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header for %s: %v", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// untar returns the entries of a plain tar.
func untar(t testing.TB, data []byte) files {
	t.Helper()
	var fs files
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return fs
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, file{name: hdr.Name, data: body, typ: hdr.Typeflag, link: hdr.Linkname})
	}
}

// get returns the entry called name.
func (fs files) get(t testing.TB, name string) file {
	t.Helper()
	i := slices.IndexFunc(fs, func(f file) bool { return f.name == name })
	if i < 0 {
		t.Fatalf("no entry %s", name)
	}
	return fs[i]
}

// with returns the entries followed by more.
func (fs files) with(more ...file) files { return append(slices.Clip(fs), more...) }

// without returns the entries but those called names.
func (fs files) without(names ...string) files {
	return slices.DeleteFunc(slices.Clone(fs), func(f file) bool { return slices.Contains(names, f.name) })
}

// replaced returns the entries with the one called name replaced by f, in place.
func (fs files) replaced(name string, f file) files {
	out := slices.Clone(fs)
	for i := range out {
		if out[i].name == name {
			out[i] = f
		}
	}
	return out
}

// edited returns the entries with the data of the one called name passed through edit.
func (fs files) edited(t testing.TB, name string, edit func([]byte) []byte) files {
	return fs.replaced(name, reg(name, edit(bytes.Clone(fs.get(t, name).data))))
}

// withManifest returns the entries with manifest.json's first image passed through edit.
func (fs files) withManifest(t testing.TB, edit func(m *dockerManifest)) files {
	t.Helper()
	return fs.edited(t, "manifest.json", func(data []byte) []byte {
		var ms []dockerManifest
		if err := json.Unmarshal(data, &ms); err != nil {
			t.Fatal(err)
		}
		edit(&ms[0])
		out, err := json.Marshal(ms)
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
}

// flip inverts a byte in the middle of data.
func flip(data []byte) []byte {
	data[len(data)/2] ^= 0xff
	return data
}

// oneFileTar is a layer holding one file.
func oneFileTar(t testing.TB, name, content string) []byte {
	return files{reg(name, []byte(content))}.tar(t)
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sameElements(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func zst(t testing.TB, data []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return enc.EncodeAll(data, nil)
}

// ferryBundle is a bundle Write made of one image, as entries, with the entry names
// manifest.json gives its blobs.
type ferryBundle struct {
	files    files
	config   string
	layers   []string
	manifest string // the image manifest, which only index.json refers to
}

func newFerryBundle(t testing.TB) ferryBundle {
	t.Helper()
	img, _ := testImages(t)
	fs := untar(t, writeBundle(t, WriteOptions{}, map[string]v1.Image{"example.com/app:1": img}))
	var ms []dockerManifest
	if err := json.Unmarshal(fs.get(t, "manifest.json").data, &ms); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ferryBundle{files: fs, config: ms[0].Config, layers: ms[0].Layers, manifest: blobPath(digest)}
}

// withLayer returns the bundle's entries with layer i replaced by a blob holding data, and
// the blob's name.
func (b ferryBundle) withLayer(t testing.TB, i int, data []byte) (files, string) {
	name := blobPath(sha256Hash(data))
	fs := b.files.without(b.layers[i]).with(reg(name, data))
	return fs.withManifest(t, func(m *dockerManifest) { m.Layers[i] = name }), name
}

// legacyBundle is a bundle as docker 20.10's docker save writes it: a directory per layer
// named by its v1 ID, the config named by its digest, manifest.json and repositories.
type legacyBundle struct {
	files   files
	id      v1.Hash
	config  string // <id hex>.json
	diffIDs []v1.Hash
	layers  []string // <v1 id>/layer.tar
	v1IDs   []string
}

func newLegacyBundle(t testing.TB) legacyBundle {
	t.Helper()
	var b legacyBundle
	parent := ""
	for i, content := range []string{"hello", "world"} {
		layer := oneFileTar(t, fmt.Sprintf("etc/file%d", i), content)
		v1ID := sha256Hash([]byte(fmt.Sprintf("v1 layer %d", i))).Hex
		v1JSON := fmt.Sprintf(`{"id":%q,"parent":%q,"created":"1970-01-01T00:00:00Z","os":"linux"}`, v1ID, parent)
		parent = v1ID
		b.diffIDs = append(b.diffIDs, sha256Hash(layer))
		b.v1IDs = append(b.v1IDs, v1ID)
		b.layers = append(b.layers, v1ID+"/layer.tar")
		b.files = append(b.files,
			file{name: v1ID + "/", typ: tar.TypeDir},
			reg(v1ID+"/VERSION", []byte("1.0")),
			reg(v1ID+"/json", []byte(v1JSON)),
			reg(v1ID+"/layer.tar", layer))
	}
	config, err := json.Marshal(v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		Config: v1.Config{Cmd: []string{"/bin/sh"}},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: b.diffIDs},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.id = sha256Hash(config)
	b.config = b.id.Hex + ".json"
	manifest, _ := json.Marshal([]dockerManifest{{Config: b.config, RepoTags: []string{"example.com/legacy:1"}, Layers: b.layers}})
	repositories, _ := json.Marshal(map[string]map[string]string{"example.com/legacy": {"1": parent}})
	b.files = append(b.files, reg(b.config, config), reg("manifest.json", manifest), reg("repositories", repositories))
	// docker 20.10 tars the directory it saved into, in lexical order.
	slices.SortFunc(b.files, func(x, y file) int { return strings.Compare(x.name, y.name) })
	return b
}

// A recorder is a Sink that records what Read did with it.
type recorder struct {
	entries []string
	commits int
	aborts  int
	aborted error
}

func (r *recorder) Entry(_ context.Context, e Entry, rd io.Reader) error {
	r.entries = append(r.entries, e.Name)
	n, err := io.Copy(io.Discard, rd)
	if err == nil && n != e.Size {
		err = fmt.Errorf("recorder: entry %s gave %d of %d bytes", e.Name, n, e.Size)
	}
	return err
}

func (r *recorder) Commit(context.Context, *Bundle) error { r.commits++; return nil }
func (r *recorder) Abort(err error)                       { r.aborts++; r.aborted = err }

// readOK reads input, which must succeed with one Commit.
func readOK(t *testing.T, input []byte) (*Bundle, *recorder) {
	t.Helper()
	sink := &recorder{}
	b, err := Read(context.Background(), bytes.NewReader(input), sink, ReadOptions{})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if sink.commits != 1 || sink.aborts != 0 {
		t.Fatalf("sink got %d commits and %d aborts, want 1 and 0", sink.commits, sink.aborts)
	}
	return b, sink
}

// readFails reads input, which must fail with want (any error when nil) naming at, and
// leave the sink aborted and not committed.
func readFails(t *testing.T, input []byte, want error, at string) {
	t.Helper()
	readFailsFrom(t, bytes.NewReader(input), want, at)
}

func readFailsFrom(t *testing.T, input io.Reader, want error, at string) {
	t.Helper()
	sink := &recorder{}
	b, err := Read(context.Background(), input, sink, ReadOptions{})
	switch {
	case err == nil:
		t.Fatalf("Read succeeded with %d images, want %v", len(b.Images), cmp.Or(want, errors.New("an error")))
	case want != nil && !errors.Is(err, want):
		t.Errorf("Read: %v, want %v", err, want)
	case !strings.Contains(err.Error(), at):
		t.Errorf("Read: %v, does not name %s", err, at)
	}
	if b != nil {
		t.Error("Read returned a bundle with its error")
	}
	if sink.commits != 0 || sink.aborts != 1 || sink.aborted != err {
		t.Errorf("sink got %d commits and %d aborts (with %v), want 0 and 1 (with the error)", sink.commits, sink.aborts, sink.aborted)
	}
}

// sparseEntry is a PAX sparse file entry, all hole, that expands to size bytes.
func sparseEntry(name string, size int64) []byte {
	record := func(k, v string) string {
		rest := " " + k + "=" + v + "\n"
		n := len(rest) + 1
		for len(fmt.Sprint(n))+len(rest) != n {
			n++
		}
		return fmt.Sprint(n) + rest
	}
	pax := record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") +
		record("GNU.sparse.name", name) + record("GNU.sparse.realsize", fmt.Sprint(size))
	paxHeader := header("PaxHeaders/"+path.Base(name), int64(len(pax)), tar.TypeReg)
	retype(paxHeader, tar.TypeXHeader)
	sparseMap := fmt.Sprintf("1\n%d\n0\n", size) // one empty data region at the end
	var out []byte
	out = append(out, paxHeader...)
	out = append(out, pad([]byte(pax))...)
	out = append(out, header(path.Base(name), 512, tar.TypeReg)...)
	return append(out, pad([]byte(sparseMap))...)
}

// retype sets a tar header block's type flag, which archive/tar will not write for PAX
// headers, and its checksum.
func retype(block []byte, typ byte) {
	block[156] = typ
	copy(block[148:156], "        ")
	sum := 0
	for _, c := range block[:512] {
		sum += int(c)
	}
	copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

func pad(data []byte) []byte { return append(data, make([]byte, Padding(int64(len(data))))...) }

func TestReadRefuses(t *testing.T) {
	fb := newFerryBundle(t)
	lb := newLegacyBundle(t)
	rnd := rand.New(rand.NewPCG(1, 2))
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(rnd.UintN(256))
	}
	text := []byte(strings.Repeat("This is a text file, not an image bundle.\n", 40))
	otherLayer := oneFileTar(t, "etc/other", "other")
	gzipLayer, gzipLayerName := fb.withLayer(t, 0, gz(t, otherLayer))
	plainLayer, plainLayerName := fb.withLayer(t, 0, otherLayer)
	notGzipLayer, notGzipLayerName := fb.withLayer(t, 0, []byte("\x1f\x8b\x08 is not gzip"))
	tagged := func(tag string) []byte {
		return fb.files.withManifest(t, func(m *dockerManifest) { m.RepoTags = []string{tag} }).tar(t)
	}
	big := make([]byte, metaMax+1)

	for _, c := range []struct {
		name  string
		input []byte
		want  error
		at    string // the message must name it
	}{
		// Paths that leave the archive, in entry names and in metadata.
		{"absolute entry name", fb.files.with(reg("/etc/passwd", nil)).tar(t), ErrUnsafeEntry, "/etc/passwd"},
		{"entry name with ..", fb.files.with(reg("../../etc/passwd", nil)).tar(t), ErrUnsafeEntry, "../../etc/passwd"},
		{"entry name with .. past a directory", fb.files.with(reg("blobs/../../x", nil)).tar(t), ErrUnsafeEntry, "blobs/../../x"},
		{"entry name absolute after ./", fb.files.with(reg(".//etc/passwd", nil)).tar(t), ErrUnsafeEntry, ".//etc/passwd"},
		{"entry name with a backslash", fb.files.with(reg(`..\x`, nil)).tar(t), ErrUnsafeEntry, `"..\\x"`},
		{"index.json outside the archive", fb.files.replaced("index.json", reg("../index.json", fb.files.get(t, "index.json").data)).tar(t), ErrUnsafeEntry, "../index.json"},
		{"absolute config path", fb.files.withManifest(t, func(m *dockerManifest) { m.Config = "/" + fb.config }).tar(t), ErrUnsafeEntry, "/" + fb.config},
		{"layer path with ..", fb.files.withManifest(t, func(m *dockerManifest) { m.Layers[0] = "../" + fb.layers[0] }).tar(t), ErrUnsafeEntry, "../" + fb.layers[0]},
		{"layer path with .. past a directory", fb.files.withManifest(t, func(m *dockerManifest) { m.Layers[1] = "blobs/../../" + fb.layers[1] }).tar(t), ErrUnsafeEntry, "blobs/../../" + fb.layers[1]},
		{"index.json digest with a path", fb.files.replaced("index.json", reg("index.json", []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../etc/passwd","size":1}]}`))).tar(t), ErrInvalidMetadata, "index.json"},

		// Links and other entry types where data is expected.
		{"symlink layer", fb.files.replaced(fb.layers[0], symlink(fb.layers[0], "/etc/shadow")).tar(t), ErrUnsafeEntry, fb.layers[0]},
		{"hardlink layer", fb.files.replaced(fb.layers[1], hardlink(fb.layers[1], fb.layers[0])).tar(t), ErrUnsafeEntry, fb.layers[1]},
		{"symlink config", fb.files.replaced(fb.config, symlink(fb.config, "../../../etc/passwd")).tar(t), ErrUnsafeEntry, fb.config},
		{"symlink config without index.json", fb.files.without("index.json").replaced(fb.config, symlink(fb.config, "x")).tar(t), ErrUnsafeEntry, fb.config},
		{"symlink layer without manifest.json", fb.files.without("manifest.json").replaced(fb.layers[0], symlink(fb.layers[0], "x")).tar(t), ErrUnsafeEntry, fb.layers[0]},
		{"legacy layer linked out of the archive", lb.files.replaced(lb.layers[0], symlink(lb.layers[0], "../../etc/passwd")).tar(t), ErrUnsafeEntry, lb.layers[0]},
		{"legacy layer hard-linked out of the archive", lb.files.replaced(lb.layers[0], hardlink(lb.layers[0], "../x")).tar(t), ErrUnsafeEntry, lb.layers[0]},
		{"legacy layer linked to a link", lb.files.replaced(lb.layers[0], symlink(lb.layers[0], "../link/layer.tar")).with(symlink("link/layer.tar", "../"+lb.layers[1])).tar(t), ErrUnsafeEntry, lb.layers[0]},
		{"legacy layer linked to a directory", lb.files.replaced(lb.layers[0], symlink(lb.layers[0], ".")).tar(t), ErrUnsafeEntry, lb.layers[0]},
		{"legacy layer linked to a missing file", lb.files.replaced(lb.layers[0], symlink(lb.layers[0], "other.tar")).tar(t), ErrUnsafeEntry, lb.layers[0]},
		{"legacy layer linked to another layer", lb.files.replaced(lb.layers[0], symlink(lb.layers[0], "../"+lb.layers[1])).tar(t), ErrDiffIDMismatch, lb.layers[1]},
		{"legacy config linked to a layer", lb.files.replaced(lb.config, symlink(lb.config, lb.layers[0])).tar(t), ErrDigestMismatch, lb.config},
		{"legacy config hard-linked to metadata", lb.files.replaced(lb.config, hardlink(lb.config, "repositories")).tar(t), ErrUnsafeEntry, lb.config},
		{"device", fb.files.with(file{name: "dev/null", typ: tar.TypeChar}).tar(t), ErrUnsafeEntry, "dev/null"},
		{"sparse file", append(sparseEntry("blobs/sha256/sparse", 1<<40), fb.files.tar(t)...), ErrUnsafeEntry, "blobs/sha256/sparse"},

		// Content that does not match its name, its descriptor or its config.
		{"layer that does not hash to its name", fb.files.edited(t, fb.layers[0], flip).tar(t), ErrDigestMismatch, fb.layers[0]},
		{"config that does not hash to its name", fb.files.edited(t, fb.config, flip).tar(t), ErrDigestMismatch, fb.config},
		{"legacy config that does not hash to the image ID", lb.files.edited(t, lb.config, func(d []byte) []byte { return bytes.Replace(d, []byte("amd64"), []byte("arm64"), 1) }).tar(t), ErrDigestMismatch, lb.config},
		{"gzip layer with another diffID", gzipLayer.tar(t), ErrDiffIDMismatch, gzipLayerName},
		{"uncompressed layer with another diffID", plainLayer.tar(t), ErrDiffIDMismatch, plainLayerName},
		{"legacy layer with another diffID", lb.files.replaced(lb.layers[1], reg(lb.layers[1], otherLayer)).tar(t), ErrDiffIDMismatch, lb.layers[1]},
		{"layer that looks gzip but is not", notGzipLayer.tar(t), ErrDiffIDMismatch, notGzipLayerName},

		// References to what is not there.
		{"missing legacy layer", lb.files.without(lb.layers[0]).tar(t), ErrMissingBlob, lb.layers[0]},
		{"missing config", fb.files.without(fb.config).tar(t), ErrMissingBlob, path.Base(fb.config)},
		{"missing image manifest", fb.files.without(fb.manifest).tar(t), ErrMissingBlob, path.Base(fb.manifest)},

		// Metadata docker load would refuse.
		{"uppercase tag", tagged("UPPER:1"), ErrInvalidMetadata, "UPPER:1"},
		{"tag with a space", tagged("a b:1"), ErrInvalidMetadata, "a b:1"},
		{"tag without a tag", tagged("busybox"), ErrInvalidMetadata, "busybox"},
		{"manifest.json not JSON", fb.files.replaced("manifest.json", reg("manifest.json", []byte("[{"))).tar(t), ErrInvalidMetadata, "manifest.json"},
		{"duplicate blob", fb.files.with(fb.files.get(t, fb.layers[0])).tar(t), ErrInvalidMetadata, fb.layers[0]},
		{"duplicate blob under ./", fb.files.with(reg("./"+fb.config, fb.files.get(t, fb.config).data)).tar(t), ErrInvalidMetadata, "./" + fb.config},
		{"duplicate manifest.json", fb.files.with(reg("manifest.json", []byte("[]"))).tar(t), ErrInvalidMetadata, "manifest.json"},

		// Metadata over the cap.
		{"manifest.json over the cap", fb.files.replaced("manifest.json", reg("manifest.json", big)).tar(t), ErrTooLarge, "manifest.json"},
		{"index.json over the cap", fb.files.replaced("index.json", reg("index.json", big)).tar(t), ErrTooLarge, "index.json"},
		{"legacy layer json over the cap", lb.files.replaced(lb.v1IDs[0]+"/json", reg(lb.v1IDs[0]+"/json", big)).tar(t), ErrTooLarge, lb.v1IDs[0] + "/json"},

		// Not a bundle at all.
		{"empty input", nil, ErrNotBundle, ""},
		{"random bytes", noise, ErrNotBundle, ""},
		{"text file", text, ErrNotBundle, ""},
		{"text file shorter than a tar header", []byte("hello\n"), ErrNotBundle, ""},
		{"gzip text file", gz(t, text), ErrNotBundle, ""},
		{"tar without images", files{reg("hello.txt", text)}.tar(t), ErrNotBundle, "manifest.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			readFails(t, c.input, c.want, c.at)
		})
	}
}

// TestReadTruncated cuts bundles short everywhere a cut is likely to fall: at every tar
// block (so between entries too), mid-block, and in gzip at every member boundary. Input that
// ends before the first tar header does is not a bundle at all.
func TestReadTruncated(t *testing.T) {
	a, _ := testImages(t)
	imgs := map[string]v1.Image{"example.com/a:1": a}
	plain := writeBundle(t, WriteOptions{}, imgs)
	zipped := writeBundle(t, WriteOptions{Encoder: compress.Encoder{Codec: compress.Gzip}}, imgs)

	type cut struct {
		at   int
		want error
	}
	cuts := map[string][]cut{
		"plain": {{0, ErrNotBundle}, {100, ErrNotBundle}, {len(plain) - 1, ErrTruncated}},
		"gzip":  {{0, ErrNotBundle}, {1, ErrNotBundle}, {5, ErrNotBundle}, {len(zipped) - 1, ErrTruncated}},
	}
	for off := 512; off < len(plain); off += 512 {
		cuts["plain"] = append(cuts["plain"], cut{off, ErrTruncated}, cut{off + 100, ErrTruncated})
	}
	// ferry writes every blob body as a gzip member of its own: a cut between members ends
	// the gzip stream cleanly, between two tar entries or after a header. The first member
	// holds the metadata, well over a tar header.
	member := zipped[:10]
	for off := 0; ; {
		next := bytes.Index(zipped[off+1:], member)
		if next < 0 {
			break
		}
		off += 1 + next
		cuts["gzip"] = append(cuts["gzip"], cut{off, ErrTruncated}, cut{off + 5, ErrTruncated}, cut{off + 200, ErrTruncated})
	}
	if len(cuts["gzip"]) < 4+3*4 {
		t.Fatalf("found only %d gzip members", (len(cuts["gzip"])-4)/3+1)
	}

	for codec, input := range map[string][]byte{"plain": plain, "gzip": zipped} {
		for _, c := range cuts[codec] {
			if c.at >= len(input) {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", codec, c.at), func(t *testing.T) {
				readFails(t, input[:c.at], c.want, "")
			})
		}
	}

	t.Run("mid-layer", func(t *testing.T) {
		fs := untar(t, plain)
		layer := fs[len(fs)-1] // the layers come last
		at := bytes.Index(plain, layer.data) + len(layer.data)/2
		readFails(t, plain[:at], ErrTruncated, layer.name)
	})
}

func TestReadCorruptGzip(t *testing.T) {
	a, _ := testImages(t)
	zipped := writeBundle(t, WriteOptions{Encoder: compress.Encoder{Codec: compress.Gzip}}, map[string]v1.Image{"example.com/a:1": a})
	for _, at := range []int{len(zipped) / 3, len(zipped) / 2, 2 * len(zipped) / 3, len(zipped) - 10} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			corrupt := bytes.Clone(zipped)
			for i := at; i < at+4; i++ {
				corrupt[i] ^= 0x55
			}
			readFails(t, corrupt, nil, "")
		})
	}
}

func TestReadGzipBomb(t *testing.T) {
	floor, ratio := bombFloor, bombRatio
	t.Cleanup(func() { bombFloor, bombRatio = floor, ratio })
	bombFloor, bombRatio = 1<<20, 20

	// One entry of 16 MiB of zeros: gzip makes about 16 KiB of it.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	name := "blobs/sha256/" + strings.Repeat("0", 64)
	if err := tw.WriteHeader(&tar.Header{Name: name, Size: 16 << 20, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	readFails(t, buf.Bytes(), ErrTooLarge, name)
}

// TestReadKeptJSON: the JSON Read keeps in memory is capped, and a config past the cap is
// refused as too much JSON, not as bad JSON. Docker's per-layer json files are not kept.
func TestReadKeptJSON(t *testing.T) {
	lb := newLegacyBundle(t)
	var junk files
	for i := range keptMax / metaMax {
		data := bytes.Repeat([]byte(" "), metaMax-keptCost) // keptMax in all, with what each costs
		data[0] = '{'
		junk = append(junk, reg(fmt.Sprintf("0junk/%d.json", i), data))
	}
	readFails(t, slices.Concat(junk, lb.files).tar(t), ErrTooLarge, "JSON entries before it add up to over")

	var jsons files
	for i := range 2*keptMax/metaMax + 1 {
		jsons = append(jsons, reg(sha256Hash([]byte(fmt.Sprint(i))).Hex+"/json", make([]byte, metaMax)))
	}
	readOK(t, slices.Concat(jsons, lb.files).tar(t))
}

func TestReadLegacy(t *testing.T) {
	lb := newLegacyBundle(t)
	b, sink := readOK(t, lb.files.tar(t))
	if len(b.Images) != 1 {
		t.Fatalf("read %d images, want 1", len(b.Images))
	}
	img := b.Images[0]
	if img.ID() != lb.id {
		t.Errorf("ID %s, want %s", img.ID(), lb.id)
	}
	if !slices.Equal(img.DiffIDs(), lb.diffIDs) {
		t.Errorf("diffIDs %v, want %v", img.DiffIDs(), lb.diffIDs)
	}
	if !slices.Equal(img.RepoTags, []string{"example.com/legacy:1"}) {
		t.Errorf("tags %v", img.RepoTags)
	}
	if want := append([]string{lb.config}, lb.layers...); !sameElements(sink.entries, want) {
		t.Errorf("sink got entries %v, want %v", sink.entries, want)
	}

	// The synthesized manifest describes the layers as they are: uncompressed tars.
	if img.Manifest == nil {
		t.Fatal("no synthesized manifest")
	}
	m, err := v1.ParseManifest(bytes.NewReader(img.Manifest.Data))
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != lb.id || m.Config.Size != img.Config.Size {
		t.Errorf("manifest config %s (%d bytes), want %s", m.Config.Digest, m.Config.Size, lb.id)
	}
	for i, l := range m.Layers {
		if l.Digest != lb.diffIDs[i] || l.MediaType != types.OCIUncompressedLayer || l.Size != img.Layers[i].Size {
			t.Errorf("manifest layer %d: %+v", i, l)
		}
	}
	if len(m.Layers) != len(lb.diffIDs) {
		t.Errorf("manifest has %d layers, want %d", len(m.Layers), len(lb.diffIDs))
	}
	if got := b.Index.Manifests; len(got) != 1 || got[0].Digest != img.Manifest.Digest {
		t.Errorf("synthesized index %+v", got)
	}
}

// TestReadSharedLayerLinks: docker 20.10 saves a layer two images hold at different places
// of their v1 chains once, and links the second image's layer.tar to it; manifest.json
// names the link. Links are resolved inside the archive, never followed on disk.
func TestReadSharedLayerLinks(t *testing.T) {
	lb := newLegacyBundle(t)
	var cfg v1.ConfigFile
	if err := json.Unmarshal(lb.files.get(t, lb.config).data, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Config.Cmd = []string{"/bin/true"}
	config, _ := json.Marshal(cfg)
	id := sha256Hash(config)
	for name, link := range map[string]func(i int, v1ID string) file{
		"symlink":  func(i int, v1ID string) file { return symlink(v1ID+"/layer.tar", "../"+lb.layers[i]) },
		"hardlink": func(i int, v1ID string) file { return hardlink(v1ID+"/layer.tar", lb.layers[i]) },
	} {
		t.Run(name, func(t *testing.T) {
			second := dockerManifest{Config: id.Hex + ".json", RepoTags: []string{"example.com/legacy:2"}}
			fs := lb.files.with(reg(second.Config, config))
			for i := range lb.layers {
				v1ID := sha256Hash([]byte(fmt.Sprintf("second v1 layer %d", i))).Hex
				fs = fs.with(file{name: v1ID + "/", typ: tar.TypeDir}, reg(v1ID+"/VERSION", []byte("1.0")), link(i, v1ID))
				second.Layers = append(second.Layers, v1ID+"/layer.tar")
			}
			fs = fs.edited(t, "manifest.json", func(data []byte) []byte {
				var ms []dockerManifest
				json.Unmarshal(data, &ms)
				out, _ := json.Marshal(append(ms, second))
				return out
			})

			b, sink := readOK(t, fs.tar(t))
			if len(b.Images) != 2 || b.Images[1].ID() != id {
				t.Fatalf("read %s", describe(b))
			}
			for i, l := range b.Images[1].Layers {
				if l.Blob != b.Images[0].Layers[i].Blob || l.Path != lb.layers[i] {
					t.Errorf("layer %d is %s, want the first image's %s", i, l.Blob, lb.layers[i])
				}
			}
			if want := append([]string{lb.config, second.Config}, lb.layers...); !sameElements(sink.entries, want) {
				t.Errorf("sink got entries %v, want %v", sink.entries, want)
			}
		})
	}
}

// TestReadUnreferencedLinks: skopeo and podman write links nothing refers to; they are
// neither followed nor refused.
func TestReadUnreferencedLinks(t *testing.T) {
	fb := newFerryBundle(t)
	lb := newLegacyBundle(t)
	for name, fs := range map[string]files{
		"ferry": fb.files.with(
			symlink("0123/layer.tar", "../"+fb.layers[0]),
			hardlink("4567/layer.tar", fb.layers[1]),
			symlink("escape", "../../../../etc/passwd")),
		"legacy": lb.files.with(symlink(lb.v1IDs[0]+"/other.tar", "layer.tar")),
	} {
		t.Run(name, func(t *testing.T) {
			b, _ := readOK(t, fs.tar(t))
			if len(b.Images) != 1 {
				t.Fatalf("read %d images", len(b.Images))
			}
		})
	}
}

// TestReadThin: a layer left out of blobs/sha256 is expected at the destination; one left
// out under a legacy path is missing (see TestReadRefuses).
func TestReadThin(t *testing.T) {
	fb := newFerryBundle(t)
	b, sink := readOK(t, fb.files.without(fb.layers[0]).tar(t))
	layers := b.Images[0].Layers
	if !layers[0].Missing || layers[1].Missing {
		t.Errorf("layers missing: %v, %v; want true, false", layers[0].Missing, layers[1].Missing)
	}
	if slices.Contains(sink.entries, fb.layers[0]) {
		t.Errorf("sink got the missing layer")
	}
	if s := b.Summary(); s.MissingLayers != 1 {
		t.Errorf("summary counts %d missing layers, want 1", s.MissingLayers)
	}
}

func TestReadZstd(t *testing.T) {
	a, _ := testImages(t)
	plain := writeBundle(t, WriteOptions{}, map[string]v1.Image{"example.com/a:1": a})
	b, _ := readOK(t, zst(t, plain))
	id, _ := a.ConfigName()
	if b.Codec != compress.Zstd || len(b.Images) != 1 || b.Images[0].ID() != id {
		t.Fatalf("read %d images with codec %s", len(b.Images), b.Codec)
	}
}

// TestReadNestedIndexes: an index that lists the same nested index many times over, or
// indexes nested deeper than any store writes, are refused.
func TestReadNestedIndexes(t *testing.T) {
	fb := newFerryBundle(t)
	nested := func(levels, copies int) []byte {
		var index v1.IndexManifest
		if err := json.Unmarshal(fb.files.get(t, "index.json").data, &index); err != nil {
			t.Fatal(err)
		}
		fs := fb.files
		descs := index.Manifests
		for range levels {
			var many []v1.Descriptor
			for range copies {
				many = append(many, descs...)
			}
			data, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: many})
			fs = fs.with(reg(blobPath(sha256Hash(data)), data))
			descs = []v1.Descriptor{{MediaType: types.OCIImageIndex, Digest: sha256Hash(data), Size: int64(len(data))}}
		}
		descs[0].Annotations = index.Manifests[0].Annotations
		data, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: descs})
		return fs.replaced("index.json", reg("index.json", data)).tar(t)
	}
	readOK(t, nested(2, 1))
	readFails(t, nested(40, 1), ErrInvalidMetadata, "nest over 8 deep")
	readFails(t, nested(2, 40000), ErrInvalidMetadata, "twice")
}

// TestReadImageListedTwice: manifest.json may list an image twice; it is one image with
// the tags of both entries, with or without index.json.
func TestReadImageListedTwice(t *testing.T) {
	fb := newFerryBundle(t)
	twice := func(fs files) files {
		return fs.edited(t, "manifest.json", func(data []byte) []byte {
			var ms []dockerManifest
			if err := json.Unmarshal(data, &ms); err != nil {
				t.Fatal(err)
			}
			second := ms[0]
			second.RepoTags = []string{"example.com/other:2"}
			out, _ := json.Marshal(append(ms, second))
			return out
		})
	}
	readFails(t, twice(fb.files).tar(t), ErrInvalidMetadata, `manifest.json tags image`)
	for name, fs := range map[string]files{"without index.json": twice(fb.files.without("index.json"))} {
		t.Run(name, func(t *testing.T) {
			b, _ := readOK(t, fs.tar(t))
			if len(b.Images) != 1 || !slices.Equal(b.Images[0].RepoTags, []string{"example.com/app:1", "example.com/other:2"}) {
				t.Fatalf("read %s", describe(b))
			}
		})
	}
}

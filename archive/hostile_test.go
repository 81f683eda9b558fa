package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// withIndex returns the entries with index.json's entries passed through edit.
func (fs files) withIndex(t testing.TB, edit func(m []v1.Descriptor) []v1.Descriptor) files {
	t.Helper()
	return fs.edited(t, "index.json", func(data []byte) []byte {
		var idx v1.IndexManifest
		if err := json.Unmarshal(data, &idx); err != nil {
			t.Fatal(err)
		}
		idx.Manifests = edit(idx.Manifests)
		out, _ := json.Marshal(idx)
		return out
	})
}

// TestReadIgnoresUnreferenced: entries nothing refers to are read, hashed and reported,
// and never handed on as listed; what manifest.json lists before them is.
func TestReadIgnoresUnreferenced(t *testing.T) {
	fb := newFerryBundle(t)
	junk := []string{"evil\x1b]0;pwned\x07name", strings.Repeat("long/", 1000) + "x", "blobs/sha256/" + fb.layers[0][len("blobs/sha256/"):] + "/shadow", "a.json"}
	var extra files
	for _, name := range junk {
		extra = append(extra, reg(name, []byte(`{"junk":true}`)))
	}
	for i := range 2000 {
		extra = append(extra, reg(fmt.Sprintf("tiny/%d", i), []byte{byte(i)}))
	}
	fs := fb.files.with(extra...)
	sink := &listing{}
	b, err := Read(t.Context(), bytes.NewReader(fs.tar(t)), sink, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range junk {
		if !slices.Contains(b.UnreferencedNames, name) {
			t.Errorf("%s not reported unreferenced", Quote(name))
		}
		if listed, got := sink.listed[name]; listed || got && !strings.HasPrefix(name, "blobs/sha256/") {
			t.Errorf("%s reached the sink (listed %v): metadata came first", Quote(name), listed)
		}
	}
	if b.Unreferenced != len(extra) || len(b.UnreferencedNames) != len(extra) {
		t.Errorf("%d unreferenced, %d named, want %d", b.Unreferenced, len(b.UnreferencedNames), len(extra))
	}
	for _, name := range append([]string{fb.config}, fb.layers...) {
		if !sink.listed[name] {
			t.Errorf("%s, which manifest.json lists before it, not passed as listed", name)
		}
	}
	note := b.Summary().UnreferencedNote()
	if strings.ContainsAny(note, "\x1b\x07") || len(note) > 2000 || !strings.Contains(note, "and 1994 more") {
		t.Errorf("note %q", note)
	}
}

// listing is a Sink that records which entries came as Listed.
type listing struct {
	recorder
	listed map[string]bool
}

func (l *listing) Entry(ctx context.Context, e Entry, r io.Reader) error {
	if l.listed == nil {
		l.listed = map[string]bool{}
	}
	l.listed[e.Name] = e.Listed
	return l.recorder.Entry(ctx, e, r)
}

func TestReadRefusesHostileMetadata(t *testing.T) {
	fb := newFerryBundle(t)
	lb := newLegacyBundle(t)
	tagged := func(tags ...string) []byte {
		return fb.files.without("index.json").withManifest(t, func(m *dockerManifest) { m.RepoTags = tags }).tar(t)
	}
	annotated := func(k, v string) []byte {
		return fb.files.withIndex(t, func(ds []v1.Descriptor) []v1.Descriptor {
			ds[0].Annotations[k] = v
			return ds
		}).tar(t)
	}
	var many []string
	for i := range maxTags + 1 {
		many = append(many, fmt.Sprintf("app:%d", i))
	}
	other := fb.files.withIndex(t, func(ds []v1.Descriptor) []v1.Descriptor {
		ds[0].Annotations = map[string]string{annotationImageName: "example.com/other:1", annotationRefName: "1"}
		return ds
	})
	for _, c := range []struct {
		name  string
		input []byte
		want  error
		at    string
	}{
		{"tag with ..", tagged("foo..bar:1"), ErrInvalidMetadata, `"foo..bar:1"`},
		{"tag with a leading separator", tagged("a/-b:1"), ErrInvalidMetadata, `"a/-b:1"`},
		{"tag with an empty component", tagged("a//b:1"), ErrInvalidMetadata, `"a//b:1"`},
		{"tag starting with a dot", tagged("a:.x"), ErrInvalidMetadata, `"a:.x"`},
		{"tag with an escape", tagged("a:1\x1b]0;x\x07"), ErrInvalidMetadata, `"a:1\x1b]0;x\a"`},
		{"64-hex repository", tagged(strings.Repeat("a", 64) + ":1"), ErrInvalidMetadata, "64-hex"},
		{"64-hex repository in docker's familiar form", tagged("docker.io/library/" + strings.Repeat("a", 64) + ":1"), ErrInvalidMetadata, "64-hex"},
		{"repository over 255 bytes", tagged(strings.Repeat("a/", 130) + "b:1"), ErrInvalidMetadata, "over 255"},
		{"too many tags", tagged(many...), ErrInvalidMetadata, "1001 tags"},
		{"ref name with a newline", annotated(annotationRefName, "1\nrm -rf /"), ErrInvalidMetadata, `"1\nrm -rf /"`},
		{"ref name with a shell character", annotated(annotationRefName, "$(id)"), ErrInvalidMetadata, `"$(id)"`},
		{"image name with a space", annotated(annotationImageName, "a b:1"), ErrInvalidMetadata, `"a b:1"`},
		{"index.json tags another name", other.tar(t), ErrInvalidMetadata, `manifest.json tags image`},
		{"index.json lists another image", fb.files.withIndex(t, func(ds []v1.Descriptor) []v1.Descriptor {
			return append(ds, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Hash(nil), Size: 0})
		}).tar(t), ErrMissingBlob, sha256Hash(nil).Hex},
		{"index.json entry of no image", fb.files.withIndex(t, func(ds []v1.Descriptor) []v1.Descriptor {
			return append(ds, v1.Descriptor{MediaType: "text/plain", Digest: sha256Hash(nil)})
		}).tar(t), ErrInvalidMetadata, `"text/plain"`},
		{"index.json entry twice", fb.files.withIndex(t, func(ds []v1.Descriptor) []v1.Descriptor { return append(ds, ds[0]) }).tar(t), ErrInvalidMetadata, "twice"},
		{"repositories with another tag", lb.files.replaced("repositories", reg("repositories", []byte(`{"example.com/legacy":{"2":"x"}}`))).tar(t), ErrInvalidMetadata, `"example.com/legacy:2"`},
	} {
		t.Run(c.name, func(t *testing.T) { readFails(t, c.input, c.want, c.at) })
	}
}

// TestReadUntaggedIndexImage: an image index.json lists that manifest.json does not is
// refused, naming both.
func TestReadIndexImageNotInManifest(t *testing.T) {
	fb := newFerryBundle(t)
	lb := newLegacyBundle(t)
	// the legacy image, with a manifest, in the ferry bundle's index only
	m := synthesizeManifest(&Image{Config: &Blob{Digest: lb.id, Size: int64(len(lb.files.get(t, lb.config).data))}, Layers: []*Layer{
		{Blob: &Blob{Digest: lb.diffIDs[0], Size: int64(len(lb.files.get(t, lb.layers[0]).data))}, MediaType: types.OCIUncompressedLayer},
		{Blob: &Blob{Digest: lb.diffIDs[1], Size: int64(len(lb.files.get(t, lb.layers[1]).data))}, MediaType: types.OCIUncompressedLayer},
	}})
	fs := fb.files.with(
		reg(blobPath(m.Digest), m.Data),
		reg(blobPath(lb.id), lb.files.get(t, lb.config).data),
		reg(blobPath(lb.diffIDs[0]), lb.files.get(t, lb.layers[0]).data),
		reg(blobPath(lb.diffIDs[1]), lb.files.get(t, lb.layers[1]).data),
	).withIndex(t, func(ds []v1.Descriptor) []v1.Descriptor {
		return append(ds, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: m.Digest, Size: m.Size})
	})
	readFails(t, fs.tar(t), ErrInvalidMetadata, "index.json entry 1 lists manifest "+m.Digest.String()+", manifest.json does not")
}

func TestReadTrailingData(t *testing.T) {
	fb := newFerryBundle(t)
	plain := fb.files.tar(t)
	second := files{reg("x", []byte("hello"))}.tar(t)
	zipped := gz(t, plain)
	readOK(t, append(bytes.Clone(plain), make([]byte, 10240)...)) // record padding
	readOK(t, append(bytes.Clone(zipped), gz(t, make([]byte, 4096))...))
	for _, c := range []struct {
		name  string
		input []byte
		want  error
		at    string
	}{
		{"second tar", append(bytes.Clone(plain), second...), ErrCorrupt, "after the end of the archive"},
		{"trailing bytes", append(bytes.Clone(plain), "OK\n"...), ErrCorrupt, "after the end of the archive"},
		{"second gzip member", append(bytes.Clone(zipped), gz(t, second)...), ErrCorrupt, "after the end of the archive"},
		{"bytes after gzip", append(bytes.Clone(zipped), "garbage after the end of the archive"...), ErrCorrupt, "gzip:"},
		{"bytes after zstd", append(zst(t, plain), "garbage after the end of the archive"...), ErrCorrupt, "zstd:"},
	} {
		t.Run(c.name, func(t *testing.T) { readFails(t, c.input, c.want, c.at) })
	}
}

func TestReadCorruptLayers(t *testing.T) {
	fb := newFerryBundle(t)
	plain := fb.files.tar(t)
	// a header's checksum broken after the first entry
	badHeader := bytes.Clone(plain)
	off := 512 + int(len(fb.files[0].data)+511)/512*512
	badHeader[off+148] ^= 0x7
	readFails(t, badHeader, ErrCorrupt, fmt.Sprintf("tar header at offset %d", off))

	zipped := gz(t, plain)
	corrupt := bytes.Clone(zipped)
	corrupt[len(corrupt)-6] ^= 0xff // the CRC
	readFails(t, corrupt, ErrCorrupt, "gzip:")

	floor := bombFloor
	t.Cleanup(func() { bombFloor = floor })
	bombFloor = 1 << 20
	bomb := zst(t, make([]byte, 64<<20))
	fs, name := fb.withLayer(t, 0, bomb)
	readFails(t, fs.tar(t), ErrTooLarge, name)
}

func TestDockerLoadable(t *testing.T) {
	fb := newFerryBundle(t)
	b, _ := readOK(t, fb.files.tar(t))
	if err := DockerLoadable(b); err != nil {
		t.Fatal(err)
	}
	b.Images[0].Layers = slices.Repeat(b.Images[0].Layers[:1], maxLayers+1)
	if err := DockerLoadable(b); err == nil || !strings.Contains(err.Error(), "at most 125") {
		t.Fatalf("126 layers: %v", err)
	}
}

// repeatedLayer is a bundle of one image whose n layers are one layer blob n times, with
// manifest.json and index.json.
func repeatedLayer(t testing.TB, n int) files {
	t.Helper()
	layer := oneFileTar(t, "etc/file", "x")
	l := sha256Hash(layer)
	config, err := json.Marshal(v1.ConfigFile{OS: "linux", RootFS: v1.RootFS{Type: "layers", DiffIDs: slices.Repeat([]v1.Hash{l}, n)}})
	if err != nil {
		t.Fatal(err)
	}
	c := sha256Hash(config)
	manifest, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: c, Size: int64(len(config))},
		Layers: slices.Repeat([]v1.Descriptor{{MediaType: types.OCIUncompressedLayer, Digest: l, Size: int64(len(layer))}}, n),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := sha256Hash(manifest)
	index, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{
		{MediaType: types.OCIManifestSchema1, Digest: m, Size: int64(len(manifest)), Annotations: map[string]string{annotationImageName: "example.com/deep:1", annotationRefName: "1"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := json.Marshal([]dockerManifest{{Config: blobPath(c), RepoTags: []string{"example.com/deep:1"}, Layers: slices.Repeat([]string{blobPath(l)}, n)}})
	if err != nil {
		t.Fatal(err)
	}
	return files{reg("index.json", index), reg("manifest.json", entries), reg(blobPath(c), config), reg(blobPath(m), manifest), reg(blobPath(l), layer)}
}

// TestReadLayerCap: an image of over 125 layers (docker's cap, maxLayers) is refused as
// invalid metadata before the sink commits anything, whether manifest.json or index.json
// lists them; one of 125 is read.
func TestReadLayerCap(t *testing.T) {
	for _, c := range []struct {
		name string
		drop string
	}{{"both", ""}, {"manifest.json", "index.json"}, {"index.json", "manifest.json"}} {
		t.Run(c.name, func(t *testing.T) {
			b, _ := readOK(t, repeatedLayer(t, maxLayers).without(c.drop).tar(t))
			if n := len(b.Images[0].Layers); n != maxLayers {
				t.Fatalf("read %d layers, want %d", n, maxLayers)
			}
			readFails(t, repeatedLayer(t, maxLayers+1).without(c.drop).tar(t), ErrInvalidMetadata, "126 layers")
		})
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"busybox:1":                         `"busybox:1"`,
		"a\x1b]0;x\x07\x00":                 `"a\x1b]0;x\a\x00"`,
		strings.Repeat("é", 100) + "\u202e": `"` + strings.Repeat("é", 48) + `"…"` + strings.Repeat("é", 14) + `\u202e" (203 bytes)`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestReadManyEntries: what the reader keeps of an entry is small and fixed. Past the first
// recordsInMemory data entries their records go to a file, and those the metadata (read
// last) uses are read back from it; the rest are counted, and named as far as the budget
// for names goes. A bundle of over maxEntries entries, or whose links name over linksMax
// bytes of targets, is refused.
func TestReadManyEntries(t *testing.T) {
	lb := newLegacyBundle(t)
	var junk files
	for i := range recordsInMemory + 500 {
		junk = append(junk, reg(fmt.Sprintf("%s/%d", strings.Repeat("n", 300), i), []byte{byte(i)}))
	}
	b, sink := readOK(t, slices.Concat(junk, lb.files).tar(t))
	if len(b.Images) != 1 || b.Images[0].ID() != lb.id || !slices.Equal(b.Images[0].DiffIDs(), lb.diffIDs) {
		t.Fatalf("read %s", describe(b))
	}
	for _, name := range append([]string{lb.config}, lb.layers...) {
		if !slices.Contains(sink.entries, name) {
			t.Errorf("sink did not get %s", name)
		}
	}
	if b.Unreferenced != len(junk) || len(b.UnreferencedNames) == 0 || len(b.UnreferencedNames) >= len(junk) {
		t.Errorf("%d unreferenced, %d of them named; want %d, some named", b.Unreferenced, len(b.UnreferencedNames), len(junk))
	}
	if note := b.Summary().UnreferencedNote(); !strings.Contains(note, fmt.Sprintf("and %d more", len(junk)-10)) {
		t.Errorf("note %q", note)
	}

	entries := maxEntries
	t.Cleanup(func() { maxEntries = entries })
	maxEntries = 100
	readFails(t, slices.Concat(junk[:200], lb.files).tar(t), ErrTooLarge, "over 100 entries")
	maxEntries = entries

	var links files
	for i := range linksMax/4000 + 1 {
		links = append(links, symlink(fmt.Sprintf("link/%d", i), strings.Repeat("t", 4000)))
	}
	readFails(t, slices.Concat(links, lb.files).tar(t), ErrTooLarge, "links before it")
}

// forwarding is a Sink that forwards to a Forwarder.
type forwarding struct{ *Forwarder }

func (f forwarding) Entry(_ context.Context, e Entry, r io.Reader) error {
	return f.Forwarder.Entry(e, r)
}
func (f forwarding) Commit(_ context.Context, b *Bundle) error { return f.Finish(b) }
func (f forwarding) Abort(error)                               { f.Close() }

// TestForwarder: entries a bundle's metadata has not listed yet (docker's manifest.json
// comes last) are held back and sent once verified, those it uses only, under the
// forwarder's names, before a manifest.json naming them.
func TestForwarder(t *testing.T) {
	lb := newLegacyBundle(t)
	junk := files{reg("junk/1", []byte("x")), reg("junk/2", []byte(`{"junk":true}`))}
	var out bytes.Buffer
	if _, err := Read(t.Context(), bytes.NewReader(slices.Concat(junk, lb.files).tar(t)), forwarding{NewForwarder(&out)}, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	sent := untar(t, out.Bytes())
	if len(sent) != 1+len(lb.layers)+1 || sent[len(sent)-1].name != "manifest.json" {
		t.Fatalf("sent %d entries, manifest.json last: %v", len(sent), sent[len(sent)-1].name)
	}
	var ms []dockerManifest
	if err := json.Unmarshal(sent.get(t, "manifest.json").data, &ms); err != nil {
		t.Fatal(err)
	}
	if got := sha256Hash(sent.get(t, ms[0].Config).data); got != lb.id {
		t.Errorf("config sent hashes to %s, want %s", got, lb.id)
	}
	for i, p := range ms[0].Layers {
		if got := sha256Hash(sent.get(t, p).data); got != lb.diffIDs[i] {
			t.Errorf("layer %d sent hashes to %s, want %s", i, got, lb.diffIDs[i])
		}
	}
}

package archive

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ferrytool/ferry/compress"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seeds in testdata/")

// fuzzSeeds are the bundles in testdata/ that seed FuzzRead: one small bundle per dialect
// and compression.
var fuzzSeeds = map[string]func(t testing.TB) []byte{
	"bundle.tar":     func(t testing.TB) []byte { return smallBundle(t).tar(t) },
	"bundle.tar.gz":  func(t testing.TB) []byte { return gzipWritten(t, smallBundle(t).tar(t)) },
	"bundle.tar.zst": func(t testing.TB) []byte { return zst(t, smallBundle(t).tar(t)) },
	"oci.tar":        func(t testing.TB) []byte { return smallBundle(t).without("manifest.json", "repositories").tar(t) },
	"legacy.tar":     func(t testing.TB) []byte { return newLegacyBundle(t).files.tar(t) },
}

// smallBundle is a bundle of one image with two small layers, as Write writes it.
func smallBundle(t testing.TB) files {
	t.Helper()
	img, err := random.Image(64, 2)
	if err != nil {
		t.Fatal(err)
	}
	return untar(t, writeBundle(t, WriteOptions{}, map[string]v1.Image{"example.com/small:1": img}))
}

// gzipWritten is a plain bundle rewritten by Write with gzip: a gzip member per blob.
func gzipWritten(t testing.TB, plain []byte) []byte {
	t.Helper()
	b, sink, err := readMem(plain)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, b, sink, WriteOptions{Encoder: compress.Encoder{Codec: compress.Gzip}}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestFuzzSeeds checks the seeds still read, and rewrites them with -update-seeds.
func TestFuzzSeeds(t *testing.T) {
	for name, gen := range fuzzSeeds {
		path := filepath.Join("testdata", name)
		if *updateSeeds {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, gen(t), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (regenerate with -update-seeds)", err)
			}
			b, sink, err := readMem(data)
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, b, sink)
		})
	}
}

// readMem reads a bundle into memory.
func readMem(data []byte) (*Bundle, *memSink, error) {
	sink := &memSink{}
	b, err := Read(context.Background(), bytes.NewReader(data), sink, ReadOptions{})
	return b, sink, err
}

// A memSink is a Sink that keeps every entry in memory and serves them back to Write.
type memSink struct {
	entries map[string][]byte
}

func (s *memSink) Entry(_ context.Context, e Entry, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if s.entries == nil {
		s.entries = map[string][]byte{}
	}
	s.entries[e.Name] = data
	return nil
}

func (s *memSink) Commit(context.Context, *Bundle) error { return nil }
func (s *memSink) Abort(error)                           {}

func (s *memSink) Open(_ context.Context, b *Blob) (io.ReadCloser, error) {
	data, ok := s.entries[b.Path]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrMissingBlob, b)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// checkRoundTrip checks what Read accepted: its images are whole and valid, and a bundle
// Write makes of it reads back as the same images.
func checkRoundTrip(t *testing.T, b *Bundle, src *memSink) {
	t.Helper()
	if len(b.Images) == 0 {
		t.Fatal("Read accepted a bundle without images")
	}
	for _, img := range b.Images {
		for _, tag := range img.RepoTags {
			if _, err := ParseTag(tag); err != nil {
				t.Errorf("Read accepted tag %q: %v", tag, err)
			}
		}
		if img.Config == nil || img.Config.Data == nil || sha256Hash(img.Config.Data) != img.ID() {
			t.Fatalf("image %s: config not kept or not hashing to the ID", img.ID())
		}
		if diffIDs := img.ConfigFile().RootFS.DiffIDs; !slices.Equal(diffIDs, img.DiffIDs()) {
			t.Errorf("image %s: diffIDs %v, config says %v", img.ID(), img.DiffIDs(), diffIDs)
		}
	}
	b.Summary()

	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, b, src, WriteOptions{}); err != nil {
		t.Fatalf("writing what Read accepted: %v", err)
	}
	again, err := Read(context.Background(), &buf, Discard, ReadOptions{})
	if err != nil {
		t.Fatalf("reading what Write wrote: %v", err)
	}
	if describe(again) != describe(b) {
		t.Fatalf("written and read back as\n%s\nwant\n%s", describe(again), describe(b))
	}
}

// describe lists a bundle's images: tags, ID, layers and whether each is there.
func describe(b *Bundle) string {
	var s string
	for _, img := range b.Images {
		s += fmt.Sprintf("%v %s\n", img.RepoTags, img.ID())
		for _, l := range img.Layers {
			s += fmt.Sprintf("  %s %s missing=%v\n", l.Digest, l.DiffID, l.Missing)
		}
	}
	return s
}

// FuzzRead feeds Read anything: it must refuse or accept without panicking or hanging, and
// what it accepts must write and read back the same. The seeds are tars of several KiB, which
// take long to minimize: run it with -fuzzminimizetime=100x (as make fuzz does), or workers
// spend whole stretches minimizing (0 execs/s) rather than fuzzing.
func FuzzRead(f *testing.F) {
	for name := range fuzzSeeds {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatalf("%v (regenerate with go test -run TestFuzzSeeds -update-seeds)", err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	// Gzip and zstd of zeros expand a thousandfold: keep every input quick to read.
	floor := bombFloor
	f.Cleanup(func() { bombFloor = floor })
	bombFloor = 16 << 20

	f.Fuzz(func(t *testing.T, data []byte) {
		b, sink, err := readMem(data)
		if err != nil {
			if b != nil {
				t.Fatal("Read returned a bundle with its error")
			}
			return
		}
		checkRoundTrip(t, b, sink)
	})
}

// FuzzManifestJSON feeds the metadata resolver manifest.json files over a legacy bundle
// that also holds a gzip layer under blobs/sha256 and links.
func FuzzManifestJSON(f *testing.F) {
	lb := newLegacyBundle(f)
	gzipLayer := gz(f, oneFileTar(f, "etc/gz", "gzip"))
	gzipName := blobPath(sha256Hash(gzipLayer))
	base := lb.files.without("manifest.json").with(
		reg(gzipName, gzipLayer),
		symlink("link/layer.tar", "../"+lb.layers[0]),
		hardlink("hardlink.json", lb.config))

	valid := string(lb.files.get(f, "manifest.json").data)
	layers := fmt.Sprintf("%q,%q", lb.layers[0], lb.layers[1])
	for _, seed := range []string{
		valid,
		"", "null", "{}", "[]", "[{}]", `[{"Config":""}]`,
		fmt.Sprintf(`[{"Config":%q,"RepoTags":["a:1","b:2"],"Layers":[%s]},{"Config":%q,"Layers":[%s]}]`, lb.config, layers, lb.config, layers),
		fmt.Sprintf(`[{"Config":%q,"Layers":[%s,%q]}]`, lb.config, layers, gzipName),
		fmt.Sprintf(`[{"Config":%q,"Layers":[%q,%q]}]`, lb.config, lb.layers[0], "blobs/sha256/"+lb.diffIDs[1].Hex),
		fmt.Sprintf(`[{"Config":%q,"Layers":[%q,%q]}]`, "hardlink.json", "link/layer.tar", lb.layers[1]),
		fmt.Sprintf(`[{"Config":"../%s","RepoTags":["UPPER:1","x"],"Layers":["/%s"]}]`, lb.config, lb.layers[0]),
		fmt.Sprintf(`[{"Config":%q,"Layers":[%q]}]`, lb.layers[0], lb.config),
	} {
		f.Add([]byte(seed))
	}

	f.Fuzz(func(t *testing.T, manifest []byte) {
		b, sink, err := readMem(base.with(reg("manifest.json", manifest)).tar(t))
		if err != nil {
			return
		}
		checkRoundTrip(t, b, sink)
	})
}

// FuzzParseTag: what ParseTag accepts is docker's grammar, fit for a terminal (strconv.Quote,
// which Quote applies to what it keeps of a long name, escapes nothing in it), and its
// familiar form (Familiar) reads back as the same name.
func FuzzParseTag(f *testing.F) {
	for _, s := range []string{"busybox:1", "127.0.0.1:5000/app:2", "a..b:1", "[::1]:5000/x/y:z", "A:1", "a:1\x1b", "0:" + strings.Repeat("0", 127),
		"docker.io/library/u/x:1", "docker.io/localhost/x:1", "docker.io/library/" + strings.Repeat("a", 64) + ":1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tag, err := ParseTag(s)
		if err != nil {
			return
		}
		if strconv.Quote(s) != `"`+s+`"` {
			t.Fatalf("accepted %s, which needs escapes", Quote(s))
		}
		again, err := ParseTag(Familiar(tag))
		if err != nil || again.Name() != tag.Name() || Familiar(again) != Familiar(tag) {
			t.Fatalf("%s (%s) reads back from %s as %s: %v", Quote(s), tag.Name(), Quote(Familiar(tag)), again.Name(), err)
		}
	})
}

package archive

import (
	"bytes"
	"context"
	"io"
	"os"
	"path"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hashes is a HashSink that records what Read tells it: diffID by digest.
type hashes struct {
	Sink
	diffIDs map[v1.Hash]v1.Hash
}

func (h *hashes) Hashed(_ Entry, digest, diffID v1.Hash) { h.diffIDs[digest] = diffID }

// TestHashSink: a HashSink is told each layer entry's digest with its diffID as it passes, a
// compressed layer's (the digest of its content decompressed) as an uncompressed one's.
func TestHashSink(t *testing.T) {
	gz, err := random.Layer(4096, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := random.Layer(4096, types.OCIUncompressedLayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, gz, raw)
	if err != nil {
		t.Fatal(err)
	}
	b, src := &Bundle{}, V1Source{}
	if _, err := b.AddImage(img, []string{"hash:1"}, src); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, b, src, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	h := &hashes{Sink: Discard, diffIDs: map[v1.Hash]v1.Hash{}}
	read, err := Read(context.Background(), &buf, h, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range read.Images[0].Layers {
		if got := h.diffIDs[l.Digest]; got != l.DiffID {
			t.Errorf("layer %s: told diffID %s, want %s", l.Digest, got, l.DiffID)
		}
	}
	if gzd, _ := gz.Digest(); h.diffIDs[gzd] == gzd {
		t.Errorf("the gzip layer's diffID was told as its digest")
	}
}

// unders is a Sink that records the Under of each entry.
type unders struct {
	Sink
	under map[string]*string
}

func (u *unders) Entry(ctx context.Context, e Entry, r io.Reader) error {
	u.under[e.Name] = e.Under
	return u.Sink.Entry(ctx, e, r)
}

// TestEntryUnder: a legacy layer's entry says, from the json before it, which layer it is
// on, as manifest.json orders them; other entries say nothing.
func TestEntryUnder(t *testing.T) {
	data, err := os.ReadFile("testdata/legacy.tar")
	if err != nil {
		t.Fatal(err)
	}
	u := &unders{Sink: Discard, under: map[string]*string{}}
	b, err := Read(context.Background(), bytes.NewReader(data), u, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	below := ""
	for _, l := range b.Images[0].Layers {
		got := u.under[l.Path]
		if got == nil || *got != below {
			t.Errorf("%s: under %v, want %q", l.Path, got, below)
		}
		below = path.Dir(l.Path)
	}
	if got := u.under[b.Images[0].Config.Path]; got != nil {
		t.Errorf("the config entry: under %q, want nil", *got)
	}
	// An OCI layout's layers come without a json: nothing to say.
	if data, err = os.ReadFile("testdata/oci.tar"); err != nil {
		t.Fatal(err)
	}
	u.under = map[string]*string{}
	if _, err := Read(context.Background(), bytes.NewReader(data), u, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(u.under) == 0 {
		t.Fatal("no entry read from oci.tar")
	}
	for name, got := range u.under {
		if got != nil {
			t.Errorf("%s: under %q in an OCI layout", name, *got)
		}
	}
}

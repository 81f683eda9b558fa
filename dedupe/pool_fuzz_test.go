package dedupe

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// smallSet is an image of one layer of 30 files that do not compress (other files for each
// seed), and its rebuild (rebuiltAgain: new mtimes, a file edited): small enough to fuzz
// with, its rebuild stored as content.
func smallSet(t testing.TB, seed int) (old, rebuilt []v1.Image) {
	files := map[string]string{}
	for i := range 30 {
		files[fmt.Sprintf("usr/lib/f%02d", i)] = string(testenv.RandomData(6000 + 30*seed + i))
	}
	img, err := mutate.AppendLayers(empty.Image, static.NewLayer(testenv.FilesTar(files), types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	old = []v1.Image{img}
	return old, rebuiltAgain(t, old)
}

// FuzzPoolRecord: a pool's records are read from disk. Whatever the record of a bundle
// stored as content says, reading the pool (its records, stats, inventory, check, the
// index, an export) ends with an error or the bundle's own bytes, never a panic, and an
// export never serves a blob whole that is not what its digest says.
func FuzzPoolRecord(f *testing.F) {
	old, rebuilt := smallSet(f, 0)
	p, err := InitPool(filepath.Join(f.TempDir(), "pool"))
	if err != nil {
		f.Fatal(err)
	}
	addTar(f, p, "old", setTar(f, old))
	if a := addTar(f, p, "rebuilt", setTar(f, rebuilt)); len(a.Record.Content) != 1 {
		f.Fatalf("the rebuild is not stored as content: %+v", a.Record)
	}
	seed, err := os.ReadFile(p.recordPath("rebuilt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"name":"rebuilt","blobs":{},"content":{"x":{"recipe":{"digest":"..","sum":"0"},"base":[{}]}},"unlisted":["y"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(p.recordPath("rebuilt"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		records, err := p.Records()
		if err != nil {
			return
		}
		p.Stats()
		p.Inventory()
		p.Check(context.Background(), true)
		for _, r := range records {
			b, src, err := p.Export([]string{r.Name})
			if err != nil {
				continue
			}
			for _, blob := range b.Reachable() {
				if blob.Present() && blob.Data == nil {
					checkServed(t, src, blob)
				}
			}
		}
	})
}

// checkServed fails the test if src serves blob whole with other bytes than its digest says.
func checkServed(t *testing.T, src archive.BlobSource, blob *archive.Blob) {
	rc, err := src.Open(context.Background(), blob)
	if err != nil {
		return
	}
	defer rc.Close()
	h := sha256.New()
	if n, err := io.Copy(h, rc); err == nil && n == blob.Size && archive.HashOf(h) != blob.Digest {
		t.Fatalf("blob %s served as %d bytes hashing to %s", blob.Digest, n, archive.HashOf(h))
	}
}

package dedupe

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// setTar writes images tagged app:1 … app:n as one bundle.
func setTar(t testing.TB, imgs []v1.Image) []byte {
	t.Helper()
	var ts []tagged
	for i, img := range imgs {
		ts = append(ts, tagged{fmt.Sprintf("app:%d", i+1), img})
	}
	return bundleTar(t, ts...)
}

// rebuiltAgain rebuilds images once more: every mtime a day later, one file in fifty (not
// those the first rebuild edited) edited.
func rebuiltAgain(t testing.TB, imgs []v1.Image) []v1.Image {
	t.Helper()
	var out []v1.Image
	for _, img := range imgs {
		ls, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		var again []v1.Layer
		for _, l := range ls {
			again = append(again, static.NewLayer(retar(t, l), types.OCIUncompressedLayer))
		}
		next, err := mutate.AppendLayers(empty.Image, again...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, next)
	}
	return out
}

func retar(t testing.TB, l v1.Layer) []byte {
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	tr, tw := tar.NewReader(rc), tar.NewWriter(&buf)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if i%50 == 23 {
			data = append(data, "\n// patched again\n"...)
		}
		hdr.ModTime, hdr.Size = hdr.ModTime.Add(24*time.Hour), int64(len(data))
		tw.WriteHeader(hdr)
		tw.Write(data)
	}
	tw.Close()
	return buf.Bytes()
}

// dirSize is what the files under dir add up to.
func dirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			info, _ := d.Info()
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// contentPool is a pool holding a set of images, its rebuild and its rebuild's rebuild,
// added in that order, and the bundles added.
type contentPool struct {
	*Pool
	bundles map[string][]byte
	sets    map[string][]v1.Image
	growth  map[string]int64 // what adding each set grew the pool by
}

func newContentPool(t *testing.T) *contentPool {
	old, rebuilt := testenv.RebuiltSet(t, 2)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	cp := &contentPool{Pool: p, bundles: map[string][]byte{}, growth: map[string]int64{},
		sets: map[string][]v1.Image{"old": old, "rebuilt": rebuilt, "again": rebuiltAgain(t, rebuilt)}}
	for _, name := range []string{"old", "rebuilt", "again"} {
		before := dirSize(t, p.Dir)
		cp.bundles[name] = setTar(t, cp.sets[name])
		addTar(t, p, name, cp.bundles[name])
		cp.growth[name] = dirSize(t, p.Dir) - before
		t.Logf("adding %s (%d bytes) grew the pool by %d", name, len(cp.bundles[name]), cp.growth[name])
	}
	return cp
}

func (cp *contentPool) record(t *testing.T, name string) *Record {
	t.Helper()
	records, err := cp.Records()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no record %s", name)
	return nil
}

// TestPoolContent: a pool holding a set grows by about what changed when the set's rebuild
// is added, and by about what changed again when the rebuild's rebuild is (stored over the
// first rebuild's new chunks); every bundle exports as the bytes that were added; index.json
// lists the images whose layers are all whole, as go-containerregistry reads them; stats say
// what content saved; removing the old set keeps what the rebuilds build on.
func TestPoolContent(t *testing.T) {
	cp := newContentPool(t)
	old := len(cp.bundles["old"])
	for _, name := range []string{"rebuilt", "again"} {
		if r := cp.record(t, name); len(r.Content) != 3 || len(r.Layers) != 0 || len(r.Unlisted) != 2 {
			t.Errorf("%s: %d layers as content, %d whole, %d images unlisted: want 3, 0, 2", name, len(r.Content), len(r.Layers), len(r.Unlisted))
		}
		if cp.growth[name] > int64(old)/20 {
			t.Errorf("adding %s grew the pool by %d bytes, the old set being %d", name, cp.growth[name], old)
		}
	}
	packs := map[string]bool{}
	for _, c := range cp.record(t, "rebuilt").Content {
		packs[c.Pack.Digest] = true
	}
	onPacks := 0
	for _, c := range cp.record(t, "again").Content {
		for _, part := range c.Base {
			if packs[part.Digest] {
				onPacks++
			}
		}
	}
	if onPacks == 0 {
		t.Error("the second rebuild is stored over none of the first rebuild's packs")
	}
	checkExports(t, cp.Pool, cp.bundles)
	checkExposed(t, cp.Pool, map[string]v1.Image{"old/app:1": cp.sets["old"][0], "old/app:2": cp.sets["old"][1]})
	if idx, _ := cp.Index(); len(idx.Manifests) != 2 {
		t.Errorf("index.json lists %d images, want the old set's 2", len(idx.Manifests))
	}
	checkClean(t, cp.Pool, true)

	s, err := cp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Content.Layers != 6 || s.ByContent() < s.Content.Whole*9/10 {
		t.Errorf("stats: %+v, by layers %d, by content %d", s.Content, s.ByLayers(), s.ByContent())
	}

	if err := cp.Remove("old"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cp.GC(false); err != nil {
		t.Fatal(err)
	}
	delete(cp.bundles, "old")
	checkExports(t, cp.Pool, cp.bundles)
	checkClean(t, cp.Pool, true)
	inv, err := cp.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range cp.sets["again"] {
		for _, d := range diffIDs(t, img) {
			if !slices.Contains(inv.DiffIDs, d.Hex) || !inv.HasBlob(d) {
				t.Errorf("the inventory lacks layer %s of the second rebuild", d)
			}
		}
	}
}

// TestPoolStoreContent: in a pool of an older ferry (whole layers, no content cache), gc
// stores the rebuilt set's layers as content over the old set's, reading each layer once;
// the bundles export as they were added, and a second run changes nothing.
func TestPoolStoreContent(t *testing.T) {
	old, rebuilt := testenv.RebuiltSet(t, 2)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[string][]byte{"rebuilt": setTar(t, rebuilt), "old": setTar(t, old)}
	for _, name := range []string{"old", "rebuilt"} {
		os.RemoveAll(p.contentDir())
		addTar(t, p, name, bundles[name])
	}
	os.RemoveAll(p.contentDir())
	before := dirSize(t, p.Dir)
	n, whole, err := p.StoreContent(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	after := dirSize(t, p.Dir)
	t.Logf("stored %d layers as content in place of %d bytes: the pool went from %d to %d bytes", n, whole, before, after)
	if n != 3 || before-after < whole*8/10 {
		t.Errorf("stored %d layers as content, freeing %d of %d bytes: want 3, most", n, before-after, whole)
	}
	checkExports(t, p, bundles)
	checkClean(t, p, true)
	snap := snapshot(t, p.Dir)
	if n, _, err := p.StoreContent(t.Context()); n != 0 || err != nil {
		t.Errorf("a second run stored %d layers (%v)", n, err)
	}
	sameSnapshot(t, snap, snapshot(t, p.Dir))
}

// oddLayer is a layer of tar variants — PAX records, a long name, the same path twice, a
// hard link, a symlink, a directory — with bytes after the end of the archive, its files
// stamped mtime.
func oddLayer(t *testing.T, mtime time.Time) v1.Layer {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, h := range []tar.Header{
		{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dir/" + string(bytes.Repeat([]byte("long-name-"), 20)), Typeflag: tar.TypeReg, Mode: 0o644, Size: 40000},
		{Name: "dir/pax", Typeflag: tar.TypeReg, Mode: 0o644, Size: 50000, PAXRecords: map[string]string{"SCHILY.xattr.user.k": "v"}},
		{Name: "dir/twice", Typeflag: tar.TypeReg, Mode: 0o644, Size: 30000},
		{Name: "dir/twice", Typeflag: tar.TypeReg, Mode: 0o600, Size: 60000},
		{Name: "dir/hard", Typeflag: tar.TypeLink, Linkname: "dir/pax"},
		{Name: "dir/sym", Typeflag: tar.TypeSymlink, Linkname: "../etc/passwd"},
	} {
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(testenv.RandomData(int(h.Size) + i)[:h.Size])
	}
	tw.Close()
	buf.WriteString("bytes after the end of the archive")
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

// TestPoolContentOddLayers: a layer of odd tar variants, rebuilt, is stored as content and
// exports byte for byte.
func TestPoolContentOddLayers(t *testing.T) {
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[string][]byte{}
	mtime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i, name := range []string{"old", "rebuilt"} {
		img, err := mutate.AppendLayers(empty.Image, oddLayer(t, mtime.Add(time.Duration(i)*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		bundles[name] = setTar(t, []v1.Image{img})
		addTar(t, p, name, bundles[name])
	}
	r, err := p.Records()
	if err != nil || len(r[1].Content) != 1 {
		t.Fatalf("the rebuilt odd layer is not stored as content (%v): %+v", err, r)
	}
	checkExports(t, p, bundles)
	checkClean(t, p, true)
}

// TestPoolContentBaseGone: a bundle whose layers an add would store over a blob removed
// meanwhile (a gc after the bundle it belonged to was removed) is refused, naming it, and
// the pool is as the gc left it: empty.
func TestPoolContentBaseGone(t *testing.T) {
	old, rebuilt := smallSet(t, 0)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	a := addTar(t, p, "old", setTar(t, old))
	var base string
	for _, s := range a.Record.Layers {
		base = s.Digest
	}
	adding, err := p.Add("rebuilt")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Remove("old"); err != nil {
		t.Fatal(err)
	}
	_, err = readInto(removing{adding, func() {
		long := time.Now().Add(-time.Hour) // gc keeps what a live add may have written
		os.Chtimes(p.BlobPath(sha256Hex(base)), long, long)
		if _, _, err := p.GC(false); err != nil {
			t.Fatal(err)
		}
	}}, setTar(t, rebuilt))
	if err == nil || !strings.Contains(err.Error(), base) {
		t.Fatalf("got %v, want the add refused, naming blob %s", err, base)
	}
	if _, _, err := p.GC(false); err != nil {
		t.Fatal(err)
	}
	if records, _ := p.Records(); len(records) != 0 || len(blobFiles(t, p.Dir)) != 0 {
		t.Errorf("left: records %v, blobs %v", records, blobFiles(t, p.Dir))
	}
	checkClean(t, p, true)
}

// removing runs gc before the commit of an add.
type removing struct {
	*Adding
	gc func()
}

func (r removing) Commit(ctx context.Context, b *archive.Bundle) error {
	r.gc()
	return r.Adding.Commit(ctx, b)
}

// legacyTar writes imgs as `docker save` of docker 20.10 does: layers as <n>/layer.tar,
// named by no digest, manifest.json last.
func legacyTar(t *testing.T, imgs []v1.Image) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	var manifest []map[string]any
	for i, img := range imgs {
		cfg, _ := img.RawConfigFile()
		name := mustHash(t, img.ConfigName).Hex + ".json"
		put(name, cfg)
		var paths []string
		ls, _ := img.Layers()
		for k, l := range ls {
			rc, _ := l.Uncompressed()
			data, _ := io.ReadAll(rc)
			rc.Close()
			paths = append(paths, fmt.Sprintf("%d-%d/layer.tar", i, k))
			put(paths[k], data)
		}
		manifest = append(manifest, map[string]any{"Config": name, "RepoTags": []string{fmt.Sprintf("app:%d", i+1)}, "Layers": paths})
	}
	data, _ := json.Marshal(manifest)
	put("manifest.json", data)
	tw.Close()
	return buf.Bytes()
}

// TestPoolContentHeldLayer: a layer the pool holds, in a bundle whose entries do not say
// their digests (a legacy docker save), is recorded as the pool holds it, not stored again
// as content over itself.
func TestPoolContentHeldLayer(t *testing.T) {
	old, rebuilt := smallSet(t, 0)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	addTar(t, p, "old", setTar(t, old))
	addTar(t, p, "rebuilt", setTar(t, rebuilt))
	for i, set := range [][]v1.Image{old, rebuilt} {
		before := dirSize(t, p.Dir)
		r := addTar(t, p, fmt.Sprintf("legacy%d", i), legacyTar(t, set)).Record
		if len(r.Content) != i || len(r.Layers) != 1-i || dirSize(t, p.Dir)-before > 8<<10 {
			t.Errorf("%s: %d layers as content, %d whole; the pool grew by %d bytes", r.Name, len(r.Content), len(r.Layers), dirSize(t, p.Dir)-before)
		}
	}
	checkClean(t, p, true)
}

// TestPoolIndexBound: an add indexes the pool's content newest bundles first, up to
// maxIndexChunks: past it, a rebuild of an older set is stored whole.
func TestPoolIndexBound(t *testing.T) {
	defer func(n int) { maxIndexChunks = n }(maxIndexChunks)
	old, rebuilt := smallSet(t, 0)
	other, _ := smallSet(t, 1)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	addTar(t, p, "old", setTar(t, old))
	addTar(t, p, "other", setTar(t, other))
	records, _ := p.Records()
	maxIndexChunks = 1
	if x := p.contentIndex(records); len(x.parts) != 1 || x.parts[records[1].bases()[0].Sum].Sum == "" {
		t.Errorf("indexed %v, want the newest bundle's layer alone", x.parts)
	}
	if r := addTar(t, p, "rebuilt", setTar(t, rebuilt)).Record; len(r.Content) != 0 {
		t.Errorf("the rebuild of a set past the bound stored as content: %+v", r.Content)
	}
}

// TestPoolUnusedTarEntry: a bundle carrying a tar no manifest names adds as if it did not.
func TestPoolUnusedTarEntry(t *testing.T) {
	old, _ := smallSet(t, 0)
	extra := testenv.FilesTar(map[string]string{"a": string(testenv.RandomData(50000))})
	var buf bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(setTar(t, old))), tar.NewWriter(&buf)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		tw.WriteHeader(hdr)
		io.Copy(tw, tr)
	}
	sum := sha256.Sum256(extra)
	tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + hex.EncodeToString(sum[:]), Mode: 0o644, Size: int64(len(extra))})
	tw.Write(extra)
	tw.Close()
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	addTar(t, p, "old", buf.Bytes())
	checkExports(t, p, map[string][]byte{"old": setTar(t, old)})
	checkClean(t, p, true)
}

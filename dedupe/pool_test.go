package dedupe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// addTar adds a bundle tar to the pool under name, as `ferry pool add` does.
func addTar(t testing.TB, p *Pool, name string, data []byte) *Adding {
	t.Helper()
	a, err := p.Add(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readInto(a, data); err != nil {
		t.Fatalf("adding %s: %v", name, err)
	}
	return a
}

// testPool is a pool of three bundles sharing a base layer, and what went into it.
type testPool struct {
	*Pool
	ti      testImages
	bundles map[string][]tagged
	names   []string // in the order they were added
}

func newTestPool(t testing.TB) *testPool {
	t.Helper()
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPool{Pool: p, ti: ti, bundles: map[string][]tagged{
		"b1": {{"example.com/app:1", ti.app1}},
		"b2": {{"example.com/app:2", ti.app2}},
		"b3": {{"example.com/app:3", ti.app3}, {"example.com/base:1", ti.base}},
	}, names: []string{"b1", "b2", "b3"}}
	for _, name := range tp.names {
		addTar(t, p, name, bundleTar(t, tp.bundles[name]...))
	}
	return tp
}

// blobSizes returns the size of every blob of each bundle, computed from the images
// themselves rather than from the pool.
func (tp *testPool) blobSizes(t testing.TB) map[string]map[v1.Hash]int64 {
	t.Helper()
	out := map[string]map[v1.Hash]int64{}
	for name, imgs := range tp.bundles {
		b, _ := newBundle(t, imgs...)
		out[name] = map[v1.Hash]int64{}
		for _, blob := range b.Blobs() {
			out[name][blob.Digest] = blob.Size
		}
	}
	return out
}

func TestPoolStats(t *testing.T) {
	tp := newTestPool(t)
	sizes := tp.blobSizes(t)
	var wantLogical, wantStored int64
	users := map[v1.Hash]int{}
	stored := map[v1.Hash]int64{}
	for _, blobs := range sizes {
		for d, size := range blobs {
			wantLogical += size
			users[d]++
			stored[d] = size
		}
	}
	for _, size := range stored {
		wantStored += size
	}
	s, err := tp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Logical != wantLogical || s.Stored != wantStored {
		t.Errorf("logical %d, stored %d; want %d, %d", s.Logical, s.Stored, wantLogical, wantStored)
	}
	// The base layer (64 KiB) counts three times in logical bytes, once in stored ones.
	if r := s.Ratio(); r < 2 || r != float64(wantLogical)/float64(wantStored) {
		t.Errorf("ratio %.2f, want %d/%d, over 2", r, wantLogical, wantStored)
	}
	var names []string
	for _, bs := range s.Bundles {
		names = append(names, bs.Name)
		var bytes, own int64
		for d, size := range sizes[bs.Name] {
			bytes += size
			if users[d] == 1 {
				own += size
			}
		}
		if bs.Bytes != bytes || bs.Own != own {
			t.Errorf("%s: bytes %d, own %d; want %d, %d", bs.Name, bs.Bytes, bs.Own, bytes, own)
		}
	}
	if !slices.Equal(names, tp.names) {
		t.Errorf("bundles %v, want %v", names, tp.names)
	}
	if got := (Stats{}).Ratio(); got != 1 {
		t.Errorf("ratio of an empty pool %v, want 1", got)
	}
}

// TestPoolAddCounts checks what an add reports and records.
func TestPoolAddCounts(t *testing.T) {
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	baseSize := layerSize(t, ti.base, 0)
	one := addTar(t, p, "first", bundleTar(t, tagged{"example.com/app:1", ti.app1}))
	second := addTar(t, p, "second", bundleTar(t, tagged{"example.com/app:2", ti.app2}))
	if one.Skipped != 0 || one.Stored != one.Record.Bytes() {
		t.Errorf("first: stored %d, skipped %d; want %d, 0", one.Stored, one.Skipped, one.Record.Bytes())
	}
	if second.Skipped != baseSize || second.Stored+second.Skipped != second.Record.Bytes() {
		t.Errorf("second: stored %d, skipped %d; want %d skipped (the base) of %d", second.Stored, second.Skipped, baseSize, second.Record.Bytes())
	}
	r := second.Record
	want := RecordImage{Tags: []string{"example.com/app:2"}, ID: mustHash(t, ti.app2.ConfigName).String(), Manifest: mustHash(t, ti.app2.Digest).String()}
	if r.Name != "second" || len(r.Images) != 1 || !slices.Equal(r.Images[0].Tags, want.Tags) || r.Images[0].ID != want.ID || r.Images[0].Manifest != want.Manifest {
		t.Errorf("record %+v, want one image %+v", r, want)
	}
	records, err := p.Records()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 2 || records[0].Name != "first" || records[1].Name != "second" {
		t.Errorf("records %v, want first then second", records)
	}
}

// TestPoolExport checks that what comes out of the pool is what went in: the same image IDs
// and manifest digests, and for a whole bundle the same bytes.
func TestPoolExport(t *testing.T) {
	tp := newTestPool(t)
	ti := tp.ti
	tests := []struct {
		name string
		refs []string
		want []tagged
	}{
		{"a bundle", []string{"b1"}, tp.bundles["b1"]},
		{"a bundle of two images", []string{"b3"}, tp.bundles["b3"]},
		{"an image by tag", []string{"example.com/app:2"}, []tagged{{"example.com/app:2", ti.app2}}},
		{"a tag from a bundle of two", []string{"example.com/base:1"}, []tagged{{"example.com/base:1", ti.base}}},
		{"an image of a bundle, NAME/TAG", []string{"b3/example.com/base:1"}, []tagged{{"example.com/base:1", ti.base}}},
		{"a bundle and a tag", []string{"b1", "example.com/app:3"}, []tagged{{"example.com/app:1", ti.app1}, {"example.com/app:3", ti.app3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, src, err := tp.Export(tt.refs)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Images) != len(tt.want) {
				t.Fatalf("%d images, want %d", len(b.Images), len(tt.want))
			}
			data := writeTar(t, b, src)
			read, err := readInto(archive.Discard, data)
			if err != nil {
				t.Fatalf("reading the export back: %v", err)
			}
			for _, got := range [][]*archive.Image{b.Images, read.Images} {
				for i, want := range tt.want {
					img := got[i]
					if !slices.Equal(img.RepoTags, []string{want.tag}) {
						t.Errorf("image %d: tags %v, want %s", i, img.RepoTags, want.tag)
					}
					if id := mustHash(t, want.img.ConfigName); img.ID() != id {
						t.Errorf("%s: image ID %s, want %s", want.tag, img.ID(), id)
					}
					if m := mustHash(t, want.img.Digest); img.Manifest.Digest != m {
						t.Errorf("%s: manifest %s, want %s", want.tag, img.Manifest.Digest, m)
					}
				}
			}
			if original := bundleTar(t, tt.want...); !bytes.Equal(data, original) {
				t.Error("the export writes other bytes than the images it holds")
			}
		})
	}

	t.Run("unknown", func(t *testing.T) {
		for _, ref := range []string{"b4", "example.com/app:4", "b1/example.com/app:2"} {
			if _, _, err := tp.Export([]string{ref}); !errors.Is(err, ErrNoBundle) {
				t.Errorf("export %s: %v, want %v", ref, err, ErrNoBundle)
			}
		}
	})
}

// TestPoolExportNewest checks that a tag several bundles hold comes from the one added last,
// whatever the bundles' names.
func TestPoolExportNewest(t *testing.T) {
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	// Added in the same second, zeta sorts after alpha by name but is older.
	addTar(t, p, "zeta", bundleTar(t, tagged{"example.com/app:latest", ti.app1}))
	addTar(t, p, "alpha", bundleTar(t, tagged{"example.com/app:latest", ti.app2}))
	b, _, err := p.Export([]string{"example.com/app:latest"})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHash(t, ti.app2.ConfigName); len(b.Images) != 1 || b.Images[0].ID() != want {
		t.Fatalf("exported %v, want the image added last, %s", b.Images[0].ID(), want)
	}
}

func TestPoolRemoveGC(t *testing.T) {
	tp := newTestPool(t)
	sizes := tp.blobSizes(t)
	needed := func(names ...string) map[v1.Hash]bool {
		out := map[v1.Hash]bool{}
		for _, name := range names {
			for d := range sizes[name] {
				out[d] = true
			}
		}
		return out
	}
	// b2 needs the base, which b1 and b3 need too, and three blobs of its own.
	var own []v1.Hash
	var ownBytes int64
	keep := needed("b1", "b3")
	for d, size := range sizes["b2"] {
		if !keep[d] {
			own = append(own, d)
			ownBytes += size
		}
	}
	if len(own) != 3 {
		t.Fatalf("b2 owns %d blobs, want 3 (layer, config, manifest)", len(own))
	}

	if err := tp.Remove("b2"); err != nil {
		t.Fatal(err)
	}
	if err := tp.Remove("b2"); !errors.Is(err, ErrNoBundle) {
		t.Fatalf("removing b2 again: %v, want %v", err, ErrNoBundle)
	}
	if _, _, err := tp.Export([]string{"b2"}); !errors.Is(err, ErrNoBundle) {
		t.Errorf("export of a removed bundle: %v, want %v", err, ErrNoBundle)
	}

	before := snapshot(t, tp.Dir)
	removed, n, err := tp.GC(true)
	if err != nil {
		t.Fatal(err)
	}
	if !sameHashes(removed, own) || n != ownBytes {
		t.Errorf("gc --dry-run: %v (%d bytes), want %v (%d bytes)", removed, n, own, ownBytes)
	}
	sameSnapshot(t, before, snapshot(t, tp.Dir))

	removed, n, err = tp.GC(false)
	if err != nil {
		t.Fatal(err)
	}
	if !sameHashes(removed, own) || n != ownBytes {
		t.Errorf("gc: %v (%d bytes), want %v (%d bytes)", removed, n, own, ownBytes)
	}
	var left []v1.Hash
	for _, hex := range blobFiles(t, tp.Dir) {
		left = append(left, v1.Hash{Algorithm: "sha256", Hex: hex})
	}
	if !sameHashes(left, keys(keep)) {
		t.Errorf("blobs after gc %v, want those of b1 and b3 %v", left, keys(keep))
	}
	checkClean(t, tp.Pool, true)
	for _, ref := range []string{"b1", "b3"} {
		b, src, err := tp.Export([]string{ref})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readInto(archive.Discard, writeTar(t, b, src)); err != nil {
			t.Errorf("%s after gc: %v", ref, err)
		}
	}
	if removed, _, err := tp.GC(false); err != nil || len(removed) != 0 {
		t.Errorf("second gc: %v, %v; want nothing removed", removed, err)
	}

	for _, name := range []string{"b1", "b3"} {
		if err := tp.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := tp.GC(false); err != nil {
		t.Fatal(err)
	}
	if left := blobFiles(t, tp.Dir); len(left) != 0 {
		t.Errorf("blobs of an empty pool after gc: %v", left)
	}
	checkClean(t, tp.Pool, true)
}

func keys(m map[v1.Hash]bool) []v1.Hash {
	var out []v1.Hash
	for k := range m {
		out = append(out, k)
	}
	return out
}

func checkClean(t testing.TB, p *Pool, readData bool) {
	t.Helper()
	problems, err := p.Check(context.Background(), readData)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("check: %v", problems)
	}
}

// TestPoolCheck damages copies of a pool and checks that Check finds each damage.
func TestPoolCheck(t *testing.T) {
	tp := newTestPool(t)
	checkClean(t, tp.Pool, true)
	layer := layerDigests(t, tp.ti.app1)[1]
	blobFile := func(dir string) string {
		return filepath.Join(dir, "blobs", "sha256", layer.Hex)
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		// want is what Check finds without and with readData: "" for nothing, the blob at
		// fault, or "index" for index.json.
		want [2]string
	}{
		{"intact", func(*testing.T, string) {}, [2]string{"", ""}},
		{"missing blob", func(t *testing.T, dir string) {
			if err := os.Remove(blobFile(dir)); err != nil {
				t.Fatal(err)
			}
		}, [2]string{layer.String(), layer.String()}},
		{"wrong size", func(t *testing.T, dir string) {
			f, err := os.OpenFile(blobFile(dir), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write([]byte{0}); err != nil {
				t.Fatal(err)
			}
		}, [2]string{layer.String(), layer.String()}},
		{"flipped byte", func(t *testing.T, dir string) {
			data, err := os.ReadFile(blobFile(dir))
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 1
			if err := os.WriteFile(blobFile(dir), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, [2]string{"", layer.String()}},
		{"index.json lacks a bundle", func(t *testing.T, dir string) {
			l := &Layout{Dir: dir, FS: LocalFS{}}
			idx, err := l.Index()
			if err != nil {
				t.Fatal(err)
			}
			idx.Manifests = idx.Manifests[1:]
			if err := l.WriteIndex(idx); err != nil {
				t.Fatal(err)
			}
		}, [2]string{"index", ""}}, // the first check rewrites it,
		{"index.json missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "index.json")); err != nil {
				t.Fatal(err)
			}
		}, [2]string{"index", ""}}, // the first check rewrites it,
		{"index.json garbled", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, [2]string{"index", ""}}, // the first check rewrites it,
		{"a record removed by hand", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "ferry", "bundles", "b2.json")); err != nil {
				t.Fatal(err)
			}
		}, [2]string{"index", ""}}, // the first check rewrites it,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pool")
			if err := os.CopyFS(dir, os.DirFS(tp.Dir)); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir)
			p, err := OpenPool(dir)
			if err != nil {
				t.Fatal(err)
			}
			for i, readData := range []bool{false, true} {
				problems, err := p.Check(context.Background(), readData)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, pr := range problems {
					if pr.Blob != "" {
						got = append(got, pr.Blob)
					} else {
						got = append(got, "index")
					}
				}
				var want []string
				if tt.want[i] != "" {
					want = []string{tt.want[i]}
				}
				if !slices.Equal(got, want) {
					t.Errorf("check (readData %v): %v, want %v", readData, problems, want)
				}
			}
		})
	}
}

func TestPoolAddRefused(t *testing.T) {
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	data := bundleTar(t, tagged{"example.com/app:1", ti.app1})
	other := bundleTar(t, tagged{"example.com/app:2", ti.app2})
	addTar(t, p, "taken", data)

	t.Run("duplicate name", func(t *testing.T) {
		before := snapshot(t, p.Dir)
		if _, err := p.Add("taken"); err == nil {
			t.Fatal("a second bundle named taken was accepted")
		}
		sameSnapshot(t, before, snapshot(t, p.Dir))
	})

	t.Run("duplicate name at commit", func(t *testing.T) {
		// Two adds of one name race: the one to commit second is refused.
		first, err := p.Add("racing")
		if err != nil {
			t.Fatal(err)
		}
		second, err := p.Add("racing")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := readInto(first, data); err != nil {
			t.Fatal(err)
		}
		if _, err := readInto(second, other); err == nil {
			t.Fatal("the second add of racing committed")
		}
		b, _, err := p.Export([]string{"racing"})
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHash(t, ti.app1.ConfigName); b.Images[0].ID() != want {
			t.Errorf("racing holds %s, want the first add's %s", b.Images[0].ID(), want)
		}
		if stages, _ := filepath.Glob(filepath.Join(p.Dir, stagePrefix+"*")); len(stages) > 0 {
			t.Errorf("stages left: %v", stages)
		}
	})

	names := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"Web-1.2_b", true},
		{strings.Repeat("x", 128), true},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"-flag", false},
		{".hidden", false},
		{"a/b", false},
		{"../up", false},
		{"a b", false},
		{"a:b", false},
		{"é", false},
	}
	for _, tt := range names {
		t.Run("name "+tt.name, func(t *testing.T) {
			before := snapshot(t, p.Dir)
			a, err := p.Add(tt.name)
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				a.Abort(errors.New("only the name was tested"))
			} else if err == nil {
				a.Abort(nil)
				t.Fatalf("name %q accepted", tt.name)
			}
			sameSnapshot(t, before, snapshot(t, p.Dir))
		})
	}
}

// TestPoolStaleStage checks that a stage no process holds — left by a killed add — is removed
// by the next add and by gc, and that a live stage is not.
func TestPoolStaleStage(t *testing.T) {
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	// what a killed add leaves: its stage lock file, naming a process that is gone, and a
	// temporary blob; removed() looks at the temporary blob.
	stale := func(t *testing.T) string {
		id := "0-" + randomHex()
		lock := fmt.Sprintf("ferry %d %s\n", testenv.GonePID(t), machineID())
		if err := os.WriteFile(filepath.Join(p.Dir, stagePrefix+id), []byte(lock), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(p.Dir, "blobs", "sha256", tempPrefix+id+"-1")
		if err := os.WriteFile(tmp, []byte("staged"), 0o644); err != nil {
			t.Fatal(err)
		}
		return tmp
	}
	removed := func(t *testing.T, dir string, want bool) {
		t.Helper()
		_, err := os.Stat(dir)
		if want && !os.IsNotExist(err) {
			t.Errorf("stale stage %s is still there (%v)", filepath.Base(dir), err)
		}
		if !want && err != nil {
			t.Errorf("live stage %s: %v", filepath.Base(dir), err)
		}
	}

	t.Run("add", func(t *testing.T) {
		dir := stale(t)
		live, err := p.Add("live")
		if err != nil {
			t.Fatal(err)
		}
		addTar(t, p, "next", bundleTar(t, tagged{"example.com/app:1", ti.app1}))
		removed(t, dir, true)
		removed(t, filepath.Join(p.Dir, stagePrefix+live.id), false)
		if _, err := readInto(live, bundleTar(t, tagged{"example.com/app:2", ti.app2})); err != nil {
			t.Fatalf("the live add after another add's cleanup: %v", err)
		}
	})
	t.Run("gc", func(t *testing.T) {
		dir := stale(t)
		if _, _, err := p.GC(true); err != nil {
			t.Fatal(err)
		}
		removed(t, dir, false)
		if _, _, err := p.GC(false); err != nil {
			t.Fatal(err)
		}
		removed(t, dir, true)
	})
	checkClean(t, p, true)
}

// TestPoolConcurrentAdd adds overlapping bundles at once, stages made while others commit:
// every add succeeds, each blob is stored by exactly one of them, and the pool checks clean.
func TestPoolConcurrentAdd(t *testing.T) {
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	imgs := []v1.Image{ti.app1, ti.app2, ti.app3}
	const n = 8
	type result struct {
		a   *Adding
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		// bundle i holds app i%3 and app (i+1)%3: each blob is in several bundles
		b, src := newBundle(t, tagged{fmt.Sprintf("example.com/app:%d", i), imgs[i%3]}, tagged{fmt.Sprintf("example.com/other:%d", i), imgs[(i+1)%3]})
		data := writeTar(t, b, src)
		wg.Go(func() {
			a, err := p.Add(fmt.Sprintf("bundle-%d", i))
			if err != nil {
				results[i] = result{err: err}
				return
			}
			if i%2 == 0 {
				_, err = readInto(a, data)
			} else {
				err = archive.Feed(context.Background(), b, src, a)
			}
			results[i] = result{a, err}
		})
	}
	wg.Wait()
	var stored, total int64
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("bundle-%d: %v", i, r.err)
		}
		stored += r.a.Stored
		total += r.a.Stored + r.a.Skipped
	}
	checkClean(t, p, true)
	s, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Bundles) != n || s.Stored != stored || s.Logical != total {
		t.Errorf("%d bundles, stored %d, logical %d; the adds stored %d of %d", len(s.Bundles), s.Stored, s.Logical, stored, total)
	}
	if stages, _ := filepath.Glob(filepath.Join(p.Dir, stagePrefix+"*")); len(stages) > 0 {
		t.Errorf("stages left: %v", stages)
	}
}

func TestOpenPool(t *testing.T) {
	ti := newTestImages(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		ok    bool
	}{
		{"missing", func(*testing.T, string) {}, false},
		{"empty directory", func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"an OCI layout", func(t *testing.T, dir string) {
			loadLayout(t, dir, bundleTar(t, tagged{"example.com/app:1", ti.app1}))
		}, false},
		{"a pool", func(t *testing.T, dir string) {
			if _, err := InitPool(dir); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pool")
			tt.setup(t, dir)
			_, err := OpenPool(dir)
			if (err == nil) != tt.ok {
				t.Fatalf("OpenPool: %v, want ok=%v", err, tt.ok)
			}
		})
	}

	t.Run("init of a pool keeps it", func(t *testing.T) {
		tp := newTestPool(t)
		before := snapshot(t, tp.Dir)
		if _, err := InitPool(tp.Dir); err != nil {
			t.Fatal(err)
		}
		sameSnapshot(t, before, snapshot(t, tp.Dir))
	})
	t.Run("init of something else", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := InitPool(dir); err == nil {
			t.Fatal("a directory holding other files became a pool")
		}
	})
}

// TestPoolIndex reads the pool with go-containerregistry's layout package, the way skopeo and
// crane read oci:DIR:NAME/TAG.
func TestPoolIndex(t *testing.T) {
	tp := newTestPool(t)
	untagged := tp.ti.app1
	addTar(t, tp.Pool, "bare", bundleTar(t, tagged{"", untagged}))
	want := map[string]v1.Hash{
		"b1/example.com/app:1":  mustHash(t, tp.ti.app1.Digest),
		"b2/example.com/app:2":  mustHash(t, tp.ti.app2.Digest),
		"b3/example.com/app:3":  mustHash(t, tp.ti.app3.Digest),
		"b3/example.com/base:1": mustHash(t, tp.ti.base.Digest),
	}
	bare := mustHash(t, untagged.Digest)
	want["bare/sha256-"+bare.Hex] = bare

	idx, err := layout.ImageIndexFromPath(tp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]v1.Hash{}
	for _, d := range m.Manifests {
		ref := d.Annotations["org.opencontainers.image.ref.name"]
		if _, dup := got[ref]; dup {
			t.Errorf("ref name %s twice", ref)
		}
		got[ref] = d.Digest
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if err := readImage(img); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("index.json names %v, want %v", got, want)
	}

	// A removed bundle leaves index.json at once.
	if err := tp.Remove("b2"); err != nil {
		t.Fatal(err)
	}
	idx, err = layout.ImageIndexFromPath(tp.Dir)
	if err == nil {
		m, err = idx.IndexManifest()
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range m.Manifests {
		if strings.HasPrefix(d.Annotations["org.opencontainers.image.ref.name"], "b2/") {
			t.Errorf("index.json still lists %s", d.Annotations["org.opencontainers.image.ref.name"])
		}
	}
	if len(m.Manifests) != len(want)-1 {
		t.Errorf("index.json lists %d images after rm b2, want %d", len(m.Manifests), len(want)-1)
	}
}

// TestPoolRepairsIndex: a process killed between writing a record and index.json leaves an
// index that lists less than the records; the next check, gc or add rewrites it.
func TestPoolRepairsIndex(t *testing.T) {
	ti := newTestImages(t)
	p, err := InitPool(filepath.Join(t.TempDir(), "pool"))
	if err != nil {
		t.Fatal(err)
	}
	addTar(t, p, "one", bundleTar(t, tagged{"example.com/app:1", ti.app1}))
	stale, err := os.ReadFile(filepath.Join(p.Dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	addTar(t, p, "two", bundleTar(t, tagged{"example.com/app:2", ti.app2}))
	want, err := os.ReadFile(filepath.Join(p.Dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, repair := range []struct {
		name string
		run  func() error
	}{
		{"check", func() error {
			problems, err := p.Check(context.Background(), false)
			if len(problems) != 1 || !problems[0].Repaired {
				t.Errorf("check found %v, want the index repaired", problems)
			}
			return err
		}},
		{"gc", func() error { _, _, err := p.GC(false); return err }},
		{"add", func() error { addTar(t, p, "three", bundleTar(t, tagged{"example.com/app:3", ti.app3})); return nil }},
		{"rm", func() error { return p.Remove("three") }},
	} {
		t.Run(repair.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(p.Dir, "index.json"), stale, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := repair.run(); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(filepath.Join(p.Dir, "index.json"))
			if repair.name != "add" && !bytes.Equal(got, want) {
				t.Errorf("index.json after %s:\n%s\nwant\n%s", repair.name, got, want)
			}
			if !strings.Contains(string(got), "two/") {
				t.Errorf("index.json after %s does not list bundle two:\n%s", repair.name, got)
			}
			if problems, _ := p.Check(context.Background(), false); len(problems) != 0 {
				t.Errorf("check after %s: %v", repair.name, problems)
			}
		})
	}
}

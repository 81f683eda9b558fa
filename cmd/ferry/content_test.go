package main

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// rebuiltBundles writes n images and their rebuild (testenv.RebuiltSet), tagged app:1 …
// app:n in both, as two bundle files.
func rebuiltBundles(t *testing.T, n int) (old, rebuilt string) {
	oldImgs, newImgs := testenv.RebuiltSet(t, n)
	return setBundles(t, oldImgs, newImgs)
}

// setBundles writes two sets of images, tagged app:1 … app:n in both, as two bundle files.
func setBundles(t *testing.T, oldImgs, newImgs []v1.Image) (old, rebuilt string) {
	dir := t.TempDir()
	return writeApps(t, filepath.Join(dir, "old.tar"), oldImgs), writeApps(t, filepath.Join(dir, "rebuilt.tar"), newImgs)
}

// writeApps writes imgs, tagged app:1 …, to a bundle at path.
func writeApps(t *testing.T, path string, imgs []v1.Image) string {
	b, src := &archive.Bundle{}, archive.V1Source{}
	for i, img := range imgs {
		if _, err := b.AddImage(img, []string{fmt.Sprintf("app:%d", i+1)}, src); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := archive.Write(t.Context(), f, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestContentDelta is the air-gap loop by content into an OCI layout: the far side's
// inventory with its content, a delta of the rebuilt set against it (and against the old
// bundle), loaded there into exactly the rebuilt images; and refused, naming the layer, by
// a store that lacks what it builds on.
func TestContentDelta(t *testing.T) {
	old, rebuilt := rebuiltBundles(t, 2)
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	far := "oci:" + filepath.Join(dir, "far")
	have, delta, byBundle := filepath.Join(dir, "have.json"), filepath.Join(dir, "d.tar"), filepath.Join(dir, "b.tar")
	mustFerry(t, nil, "load", "-q", "-i", old, "--to", far)
	mustFerry(t, nil, "inventory", "--from", far, "--content", "-o", have)
	mustFerry(t, nil, "save", "-q", rebuilt, "--have", have, "--delta", "content", "-o", delta)
	mustFerry(t, nil, "save", "-q", rebuilt, "--have", old, "--delta", "content", "-o", byBundle)
	full := fileSize(t, rebuilt)
	for _, d := range []string{delta, byBundle} {
		t.Logf("%s: %d bytes for a set of %d", filepath.Base(d), fileSize(t, d), full)
		if fileSize(t, d) > full/20 {
			t.Errorf("%s is %d bytes for a set of %d: want under a twentieth", d, fileSize(t, d), full)
		}
	}

	t.Run("refused where the base is lacking", func(t *testing.T) {
		r := ferry(t, nil, "load", "-i", delta, "--to", "oci:"+filepath.Join(dir, "none"))
		if r.code != 3 || !strings.Contains(r.stderr, "lacks layer sha256:") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "none", "index.json")); !os.IsNotExist(err) {
			t.Errorf("the store that lacks the base was changed: %v", err)
		}
	})

	tmp := filepath.Join(dir, "tmp")
	os.Mkdir(tmp, 0o755)
	env := []string{"TMPDIR=" + tmp}
	t.Run("killed, and loaded again", func(t *testing.T) {
		index := filepath.Join(dir, "far", "index.json")
		before, _ := os.ReadFile(index)
		data, _ := os.ReadFile(delta)
		cmd := exec.Command(ferryBin, "load", "--to", far, "-q")
		cmd.Env = append(os.Environ(), env...)
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		in.Write(data[:len(data)*3/4])
		waitFor(t, func() bool { m, _ := filepath.Glob(filepath.Join(tmp, "ferry-rebuild-*")); return len(m) > 0 })
		cmd.Process.Kill()
		cmd.Wait()
		if after, _ := os.ReadFile(index); string(after) != string(before) {
			t.Error("a killed load of a content delta changed the store")
		}
		loadDelta(t, env, far, delta)
		if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) > 0 {
			t.Errorf("left after a killed load and another: %v", left)
		}
		learnt(t, nil, far)
	})
	t.Run("a pool", func(t *testing.T) {
		pool := filepath.Join(dir, "pool")
		mustFerry(t, nil, "pool", "init", pool)
		delta := contentDelta(t, nil, "pool:"+pool, "pool:"+pool+":v1", old, rebuilt)
		loadDelta(t, nil, "pool:"+pool+":v2", delta)
		got := filepath.Join(dir, "v2.tar")
		mustFerry(t, nil, "save", "-q", "pool:"+pool+":v2", "-o", got)
		if g, w := summary(t, got), summary(t, rebuilt); g.Images[0].ID != w.Images[0].ID || g.Images[1].ID != w.Images[1].ID {
			t.Errorf("the pool's v2 holds %+v, want %+v", g.Images, w.Images)
		}
	})
	back := filepath.Join(dir, "back.tar")
	mustFerry(t, nil, "save", "-q", far+":app:1", far+":app:2", "-o", back)
	want, got := summary(t, rebuilt), summary(t, back)
	for i := range want.Images {
		if w, g := want.Images[i], tagged(t, got, want.Images[i].Tags[0]); g.ID != w.ID || g.Manifest != w.Manifest {
			t.Errorf("%s loaded as %s (manifest %s), want %s (%s)", w.Tags[0], g.ID, g.Manifest, w.ID, w.Manifest)
		}
	}
}

// TestContentDeltaStores: a content delta loads into each store that holds the old set,
// rebuilt from the layers the store itself gives back (docker save, containerd's content
// store): docker 20.10, 26 on both image stores, containerd. docker load refuses it, naming
// ferry load, and leaves the daemon as it was; ls and verify say what it needs.
func TestContentDeltaStores(t *testing.T) {
	old, rebuilt := rebuiltBundles(t, 2)
	want := summary(t, rebuilt)
	for _, f := range testenv.DockerFlavors {
		t.Run(string(f), func(t *testing.T) {
			d := testenv.StartDockerFlavor(t, f)
			delta := contentDelta(t, dockerEnv(d), "docker", "", old, rebuilt)
			images := func() string {
				return strings.Join(slices.Sorted(strings.FieldsSeq(d.Run(t, "images", "-q", "--no-trunc"))), " ")
			}
			before := images()
			out, err := d.RunErr("load", "-i", delta)
			if err == nil || !strings.Contains(out, "ferry-load") {
				t.Errorf("docker load of a content delta: %v\n%s", err, out)
			}
			if after := images(); after != before {
				t.Errorf("docker load of a content delta changed the daemon: %s, was %s", after, before)
			}
			loadDelta(t, dockerEnv(d), "docker", delta)
			learnt(t, dockerEnv(d), "docker")
			for _, img := range want.Images {
				if got := strings.TrimSpace(d.Run(t, "image", "inspect", "-f", "{{.Id}}", img.Tags[0])); got != img.ID && got != img.Manifest {
					t.Errorf("%s is %s in docker, want %s", img.Tags[0], got, img.ID)
				}
			}
		})
	}
	t.Run("podman", func(t *testing.T) {
		pm := testenv.Podman5(t)
		env := []string{"PATH=" + pm.Wrapper(t) + ":/usr/sbin:/usr/bin:/sbin:/bin"}
		delta := contentDelta(t, env, "podman", "", old, rebuilt)
		loadDelta(t, env, "podman", delta)
		for _, img := range want.Images {
			if got := strings.TrimSpace(pm.Run(t, "image", "inspect", "-f", "{{.Id}}", "localhost/"+img.Tags[0])); "sha256:"+got != img.ID {
				t.Errorf("%s is %s in podman, want %s", img.Tags[0], got, img.ID)
			}
		}
	})
	t.Run("containerd", func(t *testing.T) {
		c := testenv.StartContainerd(t)
		env := []string{"CONTAINERD_ADDRESS=" + c.Socket}
		delta := contentDelta(t, env, "containerd:k8s.io", "", old, rebuilt)
		loadDelta(t, env, "containerd:k8s.io", delta)
		learnt(t, env, "containerd:k8s.io")
		out := c.Ctr(t, "-n", "k8s.io", "images", "ls")
		for _, img := range want.Images {
			if !strings.Contains(out, img.Manifest) {
				t.Errorf("containerd lists no image of manifest %s:\n%s", img.Manifest, out)
			}
		}
	})
}

// contentDelta loads the old set into store (as to, when to is set), takes its inventory
// with content, and makes a content delta of the rebuilt set against it; ls and verify must
// say what it needs.
func contentDelta(t *testing.T, env []string, store, to, old, rebuilt string) string {
	dir := t.TempDir()
	have, delta := filepath.Join(dir, "have.json"), filepath.Join(dir, "d.tar")
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache")) // the loads that follow learn into it
	mustFerry(t, env, "load", "-q", "-i", old, "--to", cmp.Or(to, store))
	// The second from the cache, reading no image; podman lists no diffIDs to look up there.
	for i, note := range []bool{true, store == "podman"} {
		r := ferry(t, env, "inventory", "--from", store, "--content", "-o", have+fmt.Sprint(i))
		if r.code != 0 || strings.Contains(r.stderr, "reading every image") != note {
			t.Fatalf("inventory --content, %s time: exit %d: %s", []string{"first", "second"}[i], r.code, r.stderr)
		}
	}
	sameFile(t, have+"0", have+"1")
	os.Rename(have+"1", have)
	mustFerry(t, nil, "save", "-q", rebuilt, "--have", have, "--delta", "content", "-o", delta)
	t.Logf("%s: a content delta of %d bytes for %d", store, fileSize(t, delta), fileSize(t, rebuilt))
	for _, verb := range []string{"ls", "verify"} {
		if out := mustFerry(t, nil, verb, delta); !strings.Contains(out, "content delta") || !strings.Contains(out, "(in ") {
			t.Errorf("ferry %s does not say what the delta is or needs:\n%s", verb, out)
		}
	}
	return delta
}

// loadDelta loads a content delta into store.
// learnt checks that the layers a content delta's load rebuilt were indexed as they went:
// the store's next content index reads no image.
func learnt(t *testing.T, env []string, from string) {
	t.Helper()
	if r := ferry(t, env, "inventory", "--from", from, "--content", "-o", "-"); r.code != 0 || strings.Contains(r.stderr, "reading every image") {
		t.Errorf("inventory --content after the load: exit %d, read the store again: %s", r.code, r.stderr)
	}
}

func loadDelta(t *testing.T, env []string, store, delta string) {
	r := ferry(t, env, "load", "-i", delta, "--to", store)
	if r.code != 0 || !strings.Contains(r.stderr, "layers rebuilt") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// waitFor waits until cond holds, for at most a minute.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
	}
}

// TestPoolContent: a pool holding a set grows by about what changed when the set's rebuild
// is added; export gives back the bytes that were added; skopeo reads the old set from the
// pool's OCI view, which leaves the rebuilt images out; ferry reads them (pool:DIR:NAME);
// stats say what content saved.
func TestPoolContent(t *testing.T) {
	oldImgs, newImgs := testenv.RebuiltSet(t, 2)
	old, rebuilt := setBundles(t, ociImages(t, oldImgs), ociImages(t, newImgs))
	dir := t.TempDir()
	pool := filepath.Join(dir, "pool")
	mustFerry(t, nil, "pool", "init", pool)
	mustFerry(t, nil, "pool", "add", "-q", pool, old)
	before := poolSize(t, pool)
	out := mustFerry(t, nil, "pool", "add", "-q", pool, rebuilt)
	grown := poolSize(t, pool) - before
	t.Logf("%s: the pool grew by %d bytes for a set of %d", strings.TrimSpace(out), grown, fileSize(t, rebuilt))
	if !strings.Contains(out, "3 layers") || grown > fileSize(t, rebuilt)/20 {
		t.Errorf("adding the rebuilt set grew the pool by %d bytes: %s", grown, out)
	}
	export := filepath.Join(dir, "export.tar")
	mustFerry(t, nil, "pool", "export", pool, "rebuilt", "-o", export)
	sameFile(t, export, rebuilt)
	run(t, "skopeo", "inspect", "oci:"+pool+":old/app:1")
	if err := exec.Command(testenv.Require(t, "skopeo"), "inspect", "oci:"+pool+":rebuilt/app:1").Run(); err == nil {
		t.Error("skopeo finds an image whose layers the pool stores as content")
	}
	saved := filepath.Join(dir, "saved.tar")
	mustFerry(t, nil, "save", "-q", "pool:"+pool+":rebuilt/app:2", "-o", saved)
	if g, w := summary(t, saved), summary(t, rebuilt); g.Images[0].ID != tagged(t, w, "app:2").ID {
		t.Errorf("pool:DIR:rebuilt/app:2 read as %s, want %s", g.Images[0].ID, tagged(t, w, "app:2").ID)
	}
	if stats := mustFerry(t, nil, "pool", "stats", pool); !strings.Contains(stats, "by content") {
		t.Errorf("pool stats: %s", stats)
	}
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
}

// ociImages returns imgs with OCI media types, which skopeo 1.9 takes from an OCI layout.
func ociImages(t *testing.T, imgs []v1.Image) []v1.Image {
	var out []v1.Image
	for _, img := range imgs {
		out = append(out, mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON))
	}
	return out
}

// poolSize is what the files of a pool add up to.
func poolSize(t *testing.T, pool string) int64 {
	t.Helper()
	out := run(t, "du", "-sb", pool)
	var n int64
	fmt.Sscan(out, &n)
	return n
}

// TestPoolContentKill: a pool of an older ferry, its sets whole, is converted by pool gc,
// killed at several points, and pool add of a rebuilt set is killed as it stages: after each
// kill every bundle exports as it was added and check passes (index.json at worst rewritten);
// the next run finishes, leaving a pool that check --read-data passes.
func TestPoolContentKill(t *testing.T) {
	old, rebuilt := rebuiltBundles(t, 2)
	pool := filepath.Join(t.TempDir(), "pool")
	mustFerry(t, nil, "pool", "init", pool)
	for _, b := range []string{old, rebuilt} {
		os.RemoveAll(filepath.Join(pool, "ferry", "content")) // as an older ferry left it
		mustFerry(t, nil, "pool", "add", "-q", pool, b)
	}
	os.RemoveAll(filepath.Join(pool, "ferry", "content"))
	bundles := map[string]string{"old": old, "rebuilt": rebuilt}
	exportsSame := func(t *testing.T) {
		t.Helper()
		for name, file := range bundles {
			out := filepath.Join(t.TempDir(), name+".tar")
			mustFerry(t, nil, "pool", "export", pool, name, "-o", out)
			sameFile(t, out, file)
		}
	}
	checkAfterKill := func(t *testing.T, what string) {
		t.Helper()
		exportsSame(t)
		if r := ferry(t, nil, "pool", "check", pool); r.code != 0 && !strings.Contains(r.stdout, "index.json") {
			t.Errorf("check after %s: exit %d: %s%s", what, r.code, r.stdout, r.stderr)
		}
	}
	before := poolSize(t, pool)
	for _, delay := range []time.Duration{50, 150, 300, 500, 800} {
		cmd := exec.Command(ferryBin, "pool", "gc", pool)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		checkAfterKill(t, fmt.Sprintf("a kill at %v", delay*time.Millisecond))
	}
	out := ferry(t, nil, "pool", "gc", pool)
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
	exportsSame(t)
	after := poolSize(t, pool)
	t.Logf("%s: the pool went from %d to %d bytes", strings.TrimSpace(out.stderr), before, after)
	if after > before*2/3 {
		t.Errorf("gc left the pool at %d bytes of %d: want the rebuilt set stored as content", after, before)
	}

	// The old set removed, what the rebuilt set builds on stays; added again, killed as it
	// stages, then added.
	mustFerry(t, nil, "pool", "rm", pool, "old")
	mustFerry(t, nil, "pool", "gc", pool)
	delete(bundles, "old")
	exportsSame(t)
	again := filepath.Join(filepath.Dir(old), "again.tar")
	os.Link(old, again)
	cmd := exec.Command(ferryBin, "pool", "add", "-q", pool, again)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForStagedBytes(t, pool)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	checkAfterKill(t, "a killed add")
	mustFerry(t, nil, "pool", "add", "-q", pool, again)
	bundles["again"] = again
	mustFerry(t, nil, "pool", "gc", pool)
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
	exportsSame(t)
	if stages, _ := filepath.Glob(filepath.Join(pool, ".ferry-stage-*")); len(stages) != 0 {
		t.Errorf("stale stages left: %v", stages)
	}
}

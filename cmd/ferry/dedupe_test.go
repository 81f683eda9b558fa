package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// TestDelta is the air-gap loop: the far side's inventory, a delta made against it on the near
// side, loaded on the far side; the same delta refused by a daemon without the base.
func TestDelta(t *testing.T) {
	near, far, empty := testenv.StartDocker(t), testenv.StartDocker(t), testenv.StartDocker(t)
	near.BusyboxImage(t, "base:1", map[string]string{"/etc/base": "base\n"})
	near.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "delta\n"})
	dir := t.TempDir()
	base, have, delta := filepath.Join(dir, "base.tar"), filepath.Join(dir, "have.json"), filepath.Join(dir, "delta.tar")
	mustFerry(t, dockerEnv(near), "save", "base:1", "-o", base, "-q")
	mustFerry(t, dockerEnv(far), "load", base, "-q")

	mustFerry(t, dockerEnv(far), "inventory", "-o", have)
	mustFerry(t, dockerEnv(near), "save", "app:1", "--have", have, "-o", delta, "-q")
	s := summary(t, delta)
	if s.MissingLayers != 1 || len(s.Images[0].Layers) != 2 || !s.Images[0].Layers[0].Missing {
		t.Fatalf("want the base layer left out: %+v", s.Images[0].Layers)
	}
	st, _ := os.Stat(delta)
	if limit := s.Images[0].Layers[1].Size + 64<<10; st.Size() > limit {
		t.Errorf("delta is %d bytes, want ≤ the new layer + 64 KiB = %d", st.Size(), limit)
	}
	mustFerry(t, nil, "verify", delta)

	t.Run("docker load on the far side", func(t *testing.T) {
		far.Run(t, "load", "-i", delta)
		if got := far.Cat(t, "app:1", "/marker"); got != "delta\n" {
			t.Fatalf("/marker = %q", got)
		}
	})
	t.Run("refused without the base", func(t *testing.T) {
		r := ferry(t, dockerEnv(empty), "load", delta)
		if r.code == 0 || !strings.Contains(r.stderr, "does not have") || !strings.Contains(r.stderr, s.Images[0].Layers[0].DiffID) {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if _, err := empty.RunErr("load", "-i", delta); err == nil {
			t.Fatal("docker loaded a delta without its base")
		}
		if out := empty.Run(t, "images", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("images after refused loads: %s", out)
		}
	})
	t.Run("base and delta together", func(t *testing.T) {
		mustFerry(t, dockerEnv(empty), "load", base, delta, "-q")
		if got := empty.Cat(t, "app:1", "/marker"); got != "delta\n" {
			t.Fatalf("/marker = %q", got)
		}
	})
	t.Run("pool takes a base and its delta", func(t *testing.T) {
		pool := filepath.Join(dir, "pool")
		mustFerry(t, nil, "pool", "init", pool)
		if r := ferry(t, nil, "pool", "add", pool, delta); r.code == 0 || !strings.Contains(r.stderr, "leaves out") {
			t.Fatalf("a delta without its base: exit %d: %s", r.code, r.stderr)
		}
		mustFerry(t, nil, "pool", "add", pool, base, delta, "-q")
		whole := filepath.Join(dir, "whole.tar")
		mustFerry(t, nil, "pool", "export", pool, "app:1", "-o", whole)
		if s := summary(t, whole); s.MissingLayers != 0 {
			t.Fatalf("the export of a delta's image should be whole: %+v", s)
		}
		empty.Run(t, "load", "-i", whole)
		if got := empty.Cat(t, "app:1", "/marker"); got != "delta\n" {
			t.Fatalf("/marker = %q", got)
		}
		empty.Run(t, "rmi", "app:1", "base:1")
	})
	t.Run("split with checksums", func(t *testing.T) {
		split := filepath.Join(dir, "split.tar")
		mustFerry(t, dockerEnv(near), "save", "app:1", "-o", split, "--split", "1Mi", "--checksum", "-q")
		parts, _ := filepath.Glob(split + ".0*")
		if len(parts) < 2 {
			t.Fatalf("want several parts, got %v", parts)
		}
		run(t, "bash", "-c", "cd "+dir+" && sha256sum -c --quiet split.tar.sha256")
		mustFerry(t, nil, "verify", parts[0])
		data, _ := os.ReadFile(parts[1])
		data[10] ^= 1
		os.WriteFile(parts[1], data, 0o644)
		r := ferry(t, nil, "verify", split)
		if r.code != 3 || !strings.Contains(r.stderr, filepath.Base(parts[1])) {
			t.Fatalf("damaged part: exit %d: %s", r.code, r.stderr)
		}
		os.Remove(parts[1])
		r = ferry(t, nil, "verify", split)
		if r.code != 3 || !strings.Contains(r.stderr, filepath.Base(parts[1])+" is missing") {
			t.Fatalf("missing part: exit %d: %s", r.code, r.stderr)
		}
	})
}

// TestPool adds three bundles sharing a base, exports and runs each, removes one and
// collects garbage, catches a flipped byte, and survives kill -9 and concurrent adds.
func TestPool(t *testing.T) {
	src, dst := testenv.StartDocker(t), testenv.StartDocker(t)
	src.BusyboxImage(t, "base:1", nil)
	dir, pool := t.TempDir(), filepath.Join(t.TempDir(), "pool")
	mustFerry(t, nil, "pool", "init", pool)
	bundles := map[string]string{}
	for _, n := range []string{"1", "2", "3"} {
		src.DeriveImage(t, "app:"+n, "base:1", map[string]string{"marker": "app " + n + "\n"})
		bundles[n] = filepath.Join(dir, "app"+n+".tar.gz")
		mustFerry(t, dockerEnv(src), "save", "app:"+n, "-o", bundles[n], "-q")
		out := mustFerry(t, nil, "pool", "add", pool, bundles[n], "-q")
		if n != "1" && !strings.Contains(out, "2.0 MB already in the pool") {
			t.Errorf("adding app%s: %s", n, out)
		}
	}
	var stats struct{ Logical, Unique, Stored int64 }
	json.Unmarshal([]byte(mustFerry(t, nil, "pool", "stats", pool, "--json")), &stats) //nolint:errcheck
	if ratio := float64(stats.Logical) / float64(stats.Unique); ratio < 2.5 {
		t.Errorf("dedupe ratio %.2f for three bundles sharing a base", ratio)
	}
	if c := float64(stats.Stored) / float64(stats.Unique); c > 0.8 {
		t.Errorf("stored %d of %d unique bytes (%.2f): docker's layers were not compressed", stats.Stored, stats.Unique, c)
	}
	readersTakePool(t, pool, "app2/app:2", dst, "app 2\n")

	for _, n := range []string{"1", "2", "3"} {
		out := filepath.Join(dir, "export"+n+".tar.gz")
		mustFerry(t, nil, "pool", "export", pool, "app"+n, "-o", out)
		sameFile(t, out, bundles[n])
		dst.Run(t, "load", "-i", out)
		if got := dst.Cat(t, "app:"+n, "/marker"); got != "app "+n+"\n" {
			t.Errorf("app:%s /marker = %q", n, got)
		}
	}

	t.Run("add from docker", func(t *testing.T) {
		saved, out := filepath.Join(dir, "saved.tar"), filepath.Join(dir, "from-docker.tar")
		mustFerry(t, dockerEnv(src), "save", "app:3", "-o", saved, "-q")
		mustFerry(t, dockerEnv(src), "pool", "add", pool, "app:3", "--name", "from-docker", "-q")
		mustFerry(t, nil, "pool", "export", pool, "from-docker", "-o", out)
		sameFile(t, out, saved)
		dst.Run(t, "rmi", "app:3")
		dst.Run(t, "load", "-i", out)
		if got := dst.Cat(t, "app:3", "/marker"); got != "app 3\n" {
			t.Errorf("app:3 /marker = %q", got)
		}
		mustFerry(t, nil, "pool", "rm", pool, "from-docker")
	})

	mustFerry(t, nil, "pool", "rm", pool, "app1")
	if out := ferry(t, nil, "pool", "gc", pool, "--dry-run"); !strings.Contains(out.stderr, "would remove 4 blobs") {
		t.Errorf("gc --dry-run: %s", out.stderr) // app1's compressed layer, config, manifest, and the manifest naming the compressed layer
	}
	mustFerry(t, nil, "pool", "gc", pool)
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
	mustFerry(t, nil, "pool", "export", pool, "app:2", "-o", filepath.Join(dir, "after-gc.tar"))

	t.Run("check catches a flipped byte", func(t *testing.T) {
		blob := largestBlob(t, pool)
		data, _ := os.ReadFile(blob)
		data[len(data)/2] ^= 1
		os.WriteFile(blob, data, 0o644)
		defer func() { data[len(data)/2] ^= 1; os.WriteFile(blob, data, 0o644) }()
		mustFerry(t, nil, "pool", "check", pool) // sizes and references still fine
		r := ferry(t, nil, "pool", "check", pool, "--read-data")
		if r.code != 3 || !strings.Contains(r.stdout, filepath.Base(blob)) {
			t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("kill -9 during add, then add again", func(t *testing.T) {
		big := filepath.Join(dir, "big.tar")
		random := make([]byte, 48<<20)
		rand.Read(random)
		src.DeriveImage(t, "big:1", "base:1", map[string]string{"random": hex.EncodeToString(random)})
		mustFerry(t, dockerEnv(src), "save", "big:1", "-o", big, "-q")
		cmd := exec.Command(ferryBin, "pool", "add", pool, big, "-q")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitForStagedBytes(t, pool)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		mustFerry(t, nil, "pool", "check", pool)
		mustFerry(t, nil, "pool", "add", pool, big, "-q")
		mustFerry(t, nil, "pool", "check", pool, "--read-data")
		if stages, _ := filepath.Glob(filepath.Join(pool, ".ferry-stage-*")); len(stages) != 0 {
			t.Errorf("stale stages left: %v", stages)
		}
	})
	t.Run("concurrent adds", func(t *testing.T) {
		var cmds []*exec.Cmd
		for _, n := range []string{"1", "3"} {
			cmd := exec.Command(ferryBin, "pool", "add", pool, bundles[n], "--name", "again"+n, "-q")
			cmd.Start()
			cmds = append(cmds, cmd)
		}
		for _, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Errorf("concurrent add: %v", err)
			}
		}
		mustFerry(t, nil, "pool", "check", pool, "--read-data")
	})
}

// sameFile fails the test unless the two files hold the same bytes.
func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, _ := os.ReadFile(got)
	b, _ := os.ReadFile(want)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("%s (%d bytes, sha256 %x) is not the same as %s (%d bytes, sha256 %x)", got, len(a), sha256.Sum256(a), want, len(b), sha256.Sum256(b))
	}
}

// readersTakePool checks that other tools read image ref (BUNDLE/TAG) straight from the pool:
// skopeo inspects it and copies it into docker, which runs it; podman pulls it, with the same
// image ID (podman 4.3 runs no container here: runc may not set rlimits in this sandbox).
func readersTakePool(t *testing.T, pool, ref string, d *testenv.Docker, marker string) {
	t.Helper()
	run(t, "skopeo", "inspect", "oci:"+pool+":"+ref)
	run(t, "skopeo", "copy", "-q", "--dest-daemon-host", d.Host, "oci:"+pool+":"+ref, "docker-daemon:from-pool:1")
	if got := d.Cat(t, "from-pool:1", "/marker"); got != marker {
		t.Errorf("skopeo copy from the pool: /marker = %q", got)
	}
	id := strings.TrimSpace(d.Run(t, "image", "inspect", "-f", "{{.Id}}", "from-pool:1"))
	d.Run(t, "rmi", "from-pool:1")
	storage, err := os.MkdirTemp("", "ferry-podman-") // podman names the image after the path: lowercase
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(storage) })
	lower := filepath.Join(storage, "pool")
	os.Symlink(pool, lower)
	podman := []string{"--root", filepath.Join(storage, "root"), "--runroot", filepath.Join(storage, "run"), "--storage-driver", "vfs"}
	if got := strings.TrimSpace(run(t, "podman", append(podman, "pull", "-q", "oci:"+lower+":"+ref)...)); "sha256:"+got != id {
		t.Errorf("podman pull from the pool: image %s, docker has %s", got, id)
	}
}

// largestBlob returns the path of the pool's largest blob.
func largestBlob(t *testing.T, pool string) string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(pool, "blobs", "sha256"))
	var best string
	var size int64
	for _, e := range entries {
		if info, _ := e.Info(); info.Size() > size {
			best, size = e.Name(), info.Size()
		}
	}
	return filepath.Join(pool, "blobs", "sha256", best)
}

// waitForStagedBytes waits until an add has staged part of a blob.
func waitForStagedBytes(t *testing.T, pool string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		staged, _ := filepath.Glob(filepath.Join(pool, "blobs", "sha256", ".ferry-tmp-*"))
		for _, f := range staged {
			if st, err := os.Stat(f); err == nil && st.Size() > 1<<20 {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("the add staged nothing in 30s")
}

// TestPoolRecompressKill converts a pool holding uncompressed layers, as ferry stored them
// before pools compressed, killing `gc --recompress` at several points: after every kill the
// bundles export as they were added, and the next run finishes, leaving a pool that check
// --read-data passes.
func TestPoolRecompressKill(t *testing.T) {
	src := testenv.StartDocker(t)
	src.BusyboxImage(t, "base:1", nil)
	dir, pool := t.TempDir(), filepath.Join(t.TempDir(), "pool")
	mustFerry(t, nil, "pool", "init", pool)
	bundles := map[string]string{}
	for _, n := range []string{"1", "2"} {
		random := make([]byte, 16<<20) // half random, half zeros: compresses to about half
		rand.Read(random[:8<<20])
		src.DeriveImage(t, "big:"+n, "base:1", map[string]string{"random": string(random)})
		bundles["big"+n] = filepath.Join(dir, "big"+n+".tar")
		mustFerry(t, dockerEnv(src), "save", "big:"+n, "-o", bundles["big"+n], "-q")
		mustFerry(t, nil, "pool", "add", pool, bundles["big"+n], "-q")
	}
	exportsSame := func(t *testing.T) {
		t.Helper()
		for name, file := range bundles {
			out := filepath.Join(dir, "export-"+name+".tar")
			mustFerry(t, nil, "pool", "export", pool, name, "-o", out)
			sameFile(t, out, file)
		}
	}
	uncompressPool(t, pool)
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
	exportsSame(t)
	before := poolStats(t, pool)

	for _, delay := range []time.Duration{20, 100, 300, 600, 1000, 1500} {
		cmd := exec.Command(ferryBin, "pool", "gc", pool, "--recompress")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("killed after %v: %+v", delay*time.Millisecond, poolStats(t, pool))
		exportsSame(t)
		// Killed between a bundle's record and index.json, check says index.json is behind.
		if r := ferry(t, nil, "pool", "check", pool, "--read-data"); r.code != 0 && strings.Count(r.stdout, "\n") != 1 && !strings.Contains(r.stdout, "index.json") {
			t.Errorf("check after a kill at %v: exit %d: %s%s", delay, r.code, r.stdout, r.stderr)
		}
	}
	mustFerry(t, nil, "pool", "gc", pool, "--recompress")
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
	exportsSame(t)
	if left, _ := filepath.Glob(filepath.Join(pool, "blobs", "sha256", ".*")); len(left) > 0 {
		t.Errorf("gc --recompress left what killed runs wrote: %q", left)
	}
	after := poolStats(t, pool)
	if after.Unique != before.Unique || after.Stored > before.Stored*9/10 {
		t.Errorf("stored %d of %d unique bytes before, %d of %d after: want it compressed", before.Stored, before.Unique, after.Stored, after.Unique)
	}
}

type stats struct{ Logical, Unique, Stored int64 }

func poolStats(t *testing.T, pool string) stats {
	t.Helper()
	var s stats
	if err := json.Unmarshal([]byte(mustFerry(t, nil, "pool", "stats", pool, "--json")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// uncompressPool makes pool one as ferry stored them before pools compressed: each layer
// stored as it came, records without "layers" and "manifests", index.json listing the
// manifests as they came.
func uncompressPool(t *testing.T, pool string) {
	t.Helper()
	blob := func(hex string) string { return filepath.Join(pool, "blobs", "sha256", hex) }
	original := map[string]string{} // manifest as the pool lists it → as it came
	records, _ := filepath.Glob(filepath.Join(pool, "ferry", "bundles", "*.json"))
	for _, path := range records {
		var r map[string]any
		data, _ := os.ReadFile(path)
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		for layer, s := range r["layers"].(map[string]any) {
			gz := s.(map[string]any)["digest"].(string)
			run(t, "sh", "-c", "gzip -dc "+blob(gz)+" > "+blob(layer))
		}
		for m, s := range r["manifests"].(map[string]any) {
			original[s.(map[string]any)["digest"].(string)] = m
		}
		delete(r, "layers")
		delete(r, "manifests")
		data, _ = json.Marshal(r)
		os.WriteFile(path, data, 0o644)
	}
	var idx struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []map[string]any `json:"manifests"`
	}
	data, _ := os.ReadFile(filepath.Join(pool, "index.json"))
	json.Unmarshal(data, &idx) //nolint:errcheck
	for _, d := range idx.Manifests {
		if m, ok := original[strings.TrimPrefix(d["digest"].(string), "sha256:")]; ok {
			st, _ := os.Stat(blob(m))
			d["digest"], d["size"] = "sha256:"+m, st.Size()
		}
	}
	data, _ = json.Marshal(idx)
	os.WriteFile(filepath.Join(pool, "index.json"), data, 0o644)
	mustFerry(t, nil, "pool", "gc", pool)
}

// TestPoolDocker26: a pool filled from docker 26 — its classic store (uncompressed layers,
// stored gzipped) and its containerd image store (layers as pulled, kept as they are) — and
// from a bundle file, exports the same bytes ferry save wrote, which docker 26 loads and runs;
// skopeo reads the pool directly.
func TestPoolDocker26(t *testing.T) {
	dir := t.TempDir()
	pool := filepath.Join(dir, "pool")
	mustFerry(t, nil, "pool", "init", pool)
	for _, f := range []testenv.Flavor{testenv.Docker26Classic, testenv.Docker26Containerd} {
		t.Run(string(f), func(t *testing.T) {
			d := testenv.StartDockerFlavor(t, f)
			d.BusyboxImage(t, "base:1", nil)
			d.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "app 1 on " + string(f) + "\n"})
			saved := filepath.Join(dir, string(f)+".tar.gz")
			mustFerry(t, dockerEnv(d), "save", "app:1", "-o", saved, "-q")
			mustFerry(t, dockerEnv(d), "pool", "add", pool, "app:1", "--name", string(f)+"-daemon", "-q")
			mustFerry(t, nil, "pool", "add", pool, saved, "--name", string(f)+"-file", "-q")
			export := filepath.Join(dir, string(f)+"-export.tar.gz")
			mustFerry(t, nil, "pool", "export", pool, string(f)+"-file", "-o", export)
			if a, b := sha256File(t, saved), sha256File(t, export); a != b {
				t.Errorf("export %s, saved %s: want the same bytes", b, a)
			}
			d.Run(t, "rmi", "app:1")
			mustFerry(t, nil, "pool", "export", pool, string(f)+"-daemon", "-o", filepath.Join(dir, "daemon.tar"))
			d.Run(t, "load", "-i", filepath.Join(dir, "daemon.tar"))
			if got := d.Cat(t, "app:1", "/marker"); got != "app 1 on "+string(f)+"\n" {
				t.Errorf("/marker = %q", got)
			}
			run(t, "skopeo", "inspect", "oci:"+pool+":"+string(f)+"-file/app:1")
			// skopeo reads the pool straight into the daemon, which runs what it got (skopeo
			// 1.18: 1.9 speaks a docker API too old for docker 26)
			testenv.Skopeo118(t).Run(t, "copy", "--dest-daemon-host", d.Host, "oci:"+pool+":"+string(f)+"-file/app:1", "docker-daemon:copied/app:1")
			if got := d.Cat(t, "copied/app:1", "/marker"); got != "app 1 on "+string(f)+"\n" {
				t.Errorf("copied by skopeo: /marker = %q", got)
			}
		})
	}
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestPoolAddAsLoad: ferry pool add takes a bundle file as ferry load --to pool:DIR:NAME does,
// --platform included: from an OCI archive of two platforms, both add the image for the
// platform asked for.
func TestPoolAddAsLoad(t *testing.T) {
	dir := t.TempDir()
	b, src := &archive.Bundle{}, archive.V1Source{}
	arm := v1.Platform{OS: "linux", Architecture: "arm64"}
	img, err := b.AddIndex(twoPlatforms(t), []string{"multi:1"}, arm, src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.Write(t.Context(), &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	written, oci := filepath.Join(dir, "written.tar"), filepath.Join(dir, "oci.tar")
	os.WriteFile(written, buf.Bytes(), 0o644)
	retar(t, written, oci, func(name string) bool { return name == "manifest.json" || name == "repositories" }, nil, nil)

	pool := filepath.Join(dir, "pool")
	mustFerry(t, nil, "pool", "init", pool)
	mustFerry(t, nil, "pool", "add", pool, oci, "--name", "added", "--platform", "linux/arm64", "-q")
	mustFerry(t, nil, "load", "-i", oci, "--to", "pool:"+pool+":loaded", "--platform", "linux/arm64", "-q")
	for _, name := range []string{"added", "loaded"} {
		var r struct{ Images []struct{ ID string } }
		data, err := os.ReadFile(filepath.Join(pool, "ferry", "bundles", name+".json"))
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err != nil || len(r.Images) != 1 || r.Images[0].ID != img.ID().String() {
			t.Errorf("%s: images %+v (%v), want the arm64 image %s", name, r.Images, err, img.ID())
		}
	}
}

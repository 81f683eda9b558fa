package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
)

// retar rewrites a plain bundle: entries drop says to leave out, then more entries at the
// end, then tail after the end of the archive.
func retar(t *testing.T, from, to string, drop func(name string) bool, more map[string][]byte, tail []byte) {
	t.Helper()
	in, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(in)), tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if drop != nil && drop(hdr.Name) {
			continue
		}
		tw.WriteHeader(hdr)
		io.Copy(tw, tr)
	}
	for name, data := range more {
		tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	out.Write(tail)
	if err := os.WriteFile(to, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHostileBundle: entries nothing refers to never reach docker or an OCI layout and are
// named, quoted, by verify; integrity problems exit 3.
func TestHostileBundle(t *testing.T) {
	d := testenv.StartDocker(t)
	d.BusyboxImage(t, "app:1", map[string]string{"/marker": "x\n"})
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar")
	mustFerry(t, dockerEnv(d), "save", "app:1", "-o", good, "-q")
	d.Run(t, "rmi", "app:1")
	var ms []struct{ Layers []string }
	s := summary(t, good)
	layer := "blobs/sha256/" + strings.TrimPrefix(s.Images[0].Layers[0].Digest, "sha256:")
	if err := json.Unmarshal([]byte(run(t, "tar", "-xOf", good, "manifest.json")), &ms); err != nil {
		t.Fatal(err)
	}

	junk := filepath.Join(dir, "junk.tar")
	fake := "\x1b]0;pwned\x07\r" + good + ": OK\n"
	retar(t, good, junk, nil, map[string][]byte{
		fake:                             []byte("x"),
		strings.Repeat("n/", 2500) + "x": []byte("x"),
		layer + "/shadow":                []byte("x"),
	}, nil)
	r := ferry(t, nil, "verify", junk)
	if r.code != 0 || strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07\r") || !strings.Contains(r.stderr, "ignored 3 entries") {
		t.Fatalf("verify: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	mustFerry(t, dockerEnv(d), "load", "-i", junk, "-q")
	if out := d.Run(t, "run", "--rm", "--network", "none", "--pull=never", "app:1", "cat", "/marker"); out != "x\n" {
		t.Fatalf("loaded image holds %q", out)
	}
	layout := filepath.Join(dir, "layout")
	mustFerry(t, nil, "load", "-i", junk, "--to", "oci:"+layout, "-q")
	if _, err := os.Stat(filepath.Join(layout, layer, "shadow")); err == nil {
		t.Error("the OCI layout got an entry nothing refers to")
	}

	missing := filepath.Join(dir, "missing.tar")
	retar(t, good, missing, func(name string) bool { return name == layer }, nil, nil)
	second := filepath.Join(dir, "second.tar")
	retar(t, good, second, nil, nil, []byte("a second archive, or anything else"))
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	data, _ := os.ReadFile(good)
	zw.Write(data)
	zw.Close()
	corrupt := zipped.Bytes()
	corrupt[len(corrupt)-6] ^= 0xff // the CRC
	corruptGz := filepath.Join(dir, "corrupt.tar.gz")
	os.WriteFile(corruptGz, corrupt, 0o644)
	badTag := filepath.Join(dir, "badtag.tar")
	retar(t, good, badTag, func(name string) bool { return name == "index.json" }, nil, nil)
	edited, _ := os.ReadFile(badTag)
	os.WriteFile(badTag, bytes.Replace(edited, []byte(`"app:1"`), []byte(`"-ap:1"`), 1), 0o644)

	d.Run(t, "rmi", "app:1")
	for _, c := range []struct {
		name  string
		input string
		msg   string
	}{
		{"missing layer", missing, "leaves out"}, // verify takes it for a thin bundle
		{"data after the end", second, "after the end of the archive"},
		{"corrupt gzip", corruptGz, "gzip:"},
		{"tag outside docker's grammar", badTag, `"-ap:1"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, args := range [][]string{{"verify", c.input}, {"load", "-i", c.input}, {"load", "-i", c.input, "--to", "oci:" + filepath.Join(dir, c.name)}} {
				if c.input == missing && args[0] == "verify" {
					continue
				}
				r := ferry(t, dockerEnv(d), args...)
				if r.code != 3 || !strings.Contains(r.stderr, c.msg) {
					t.Errorf("%v: exit %d, stderr %q; want exit 3 and %q", args, r.code, r.stderr, c.msg)
				}
			}
		})
	}
	if out := d.Run(t, "images", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("the daemon holds images after failed loads: %s", out)
	}
}

// TestManyEntriesMemory: a bundle of 200 000 tiny entries nothing refers to, with its
// manifest.json last (so the reader cannot tell which it uses until the end) or first, is
// verified and loaded into an OCI layout under 64 MiB of peak RSS.
func TestManyEntriesMemory(t *testing.T) {
	// GNU time reports the peak of the process it forks; this test's own rusage of a child
	// would not: os/exec starts it with vfork, and Linux keeps the parent's peak across exec.
	gnuTime := testenv.Require(t, "time")
	dir := t.TempDir()
	rss := filepath.Join(dir, "rss")
	for _, order := range []string{"last", "first"} {
		bundle := filepath.Join(dir, order+".tar")
		manyEntries(t, bundle, 200_000, order == "first")
		for _, args := range [][]string{{"verify", bundle}, {"load", "-i", bundle, "--to", "oci:" + filepath.Join(dir, order), "-q"}} {
			cmd := exec.Command(gnuTime, append([]string{"-f", "%M", "-o", rss, ferryBin}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("ferry %v: %v\n%s", args, err, stderr.String())
			}
			kib, err := os.ReadFile(rss)
			if err != nil {
				t.Fatal(err)
			}
			peak, err := strconv.Atoi(strings.TrimSpace(string(kib)))
			if err != nil {
				t.Fatalf("GNU time wrote %q", kib)
			}
			peak >>= 10 // KiB → MiB
			t.Logf("manifest.json %s: ferry %s: peak RSS %d MiB", order, args[0], peak)
			if peak >= 64 {
				t.Errorf("manifest.json %s: ferry %s: peak RSS %d MiB, want under 64", order, args[0], peak)
			}
			if args[0] == "verify" && !strings.Contains(stderr.String(), "ignored 200000 entries") {
				t.Errorf("verify did not report the entries: %s", stderr.String())
			}
		}
		os.Remove(bundle)
	}
}

// markerLayer is a layer tar of one file, /marker.
func markerLayer() []byte {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	lw.WriteHeader(&tar.Header{Name: "marker", Size: 2, Mode: 0o644, Typeflag: tar.TypeReg})
	lw.Write([]byte("x\n"))
	lw.Close()
	return layer.Bytes()
}

// manyEntries writes a bundle of one image (a config, a layer) and n one-byte entries
// nothing refers to, with manifest.json first or last.
func manyEntries(t *testing.T, path string, n int, first bool) {
	layer := markerLayer()
	diffID := sha256.Sum256(layer)
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%x"]},"config":{}}`, diffID)
	configPath, layerPath := fmt.Sprintf("blobs/sha256/%x", sha256.Sum256(config)), fmt.Sprintf("blobs/sha256/%x", diffID)
	manifest := fmt.Appendf(nil, `[{"Config":%q,"RepoTags":["many:1"],"Layers":[%q]}]`, configPath, layerPath)
	writeTar(t, path, func(put func(name string, data []byte)) {
		if first {
			put("manifest.json", manifest)
		}
		put(configPath, config)
		put(layerPath, layer)
		for i := range n {
			put("tiny/"+strconv.Itoa(i), []byte{byte(i)})
		}
		if !first {
			put("manifest.json", manifest)
		}
	})
}

// writeTar writes a tar file of the entries entries puts.
func writeTar(t *testing.T, path string, entries func(put func(name string, data []byte))) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	entries(func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write(data)
	})
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// zeroLayerBundle writes a bundle, in docker 25's layout, of an image of no layers
// labelled zero=1, tagged zero:1, whose config has rootfs (a JSON member with its comma,
// or nothing).
func zeroLayerBundle(t *testing.T, path, rootfs string) {
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux",%s"config":{"Labels":{"zero":"1"}}}`, rootfs)
	configDigest := sha256.Sum256(config)
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%x","size":%d},"layers":[]}`, configDigest, len(config))
	manifestDigest := sha256.Sum256(manifest)
	index := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%x","size":%d,"annotations":{"io.containerd.image.name":"docker.io/library/zero:1","org.opencontainers.image.ref.name":"1"}}]}`, manifestDigest, len(manifest))
	writeTar(t, path, func(put func(name string, data []byte)) {
		put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		put("index.json", index)
		put("manifest.json", fmt.Appendf(nil, `[{"Config":"blobs/sha256/%x","RepoTags":["zero:1"],"Layers":[]}]`, configDigest))
		put(fmt.Sprintf("blobs/sha256/%x", configDigest), config)
		put(fmt.Sprintf("blobs/sha256/%x", manifestDigest), manifest)
	})
}

// TestZeroLayerImages: an image of no layers (what FROM scratch and a LABEL build) is taken
// by every store, as they take it themselves (docker's classic store cannot save it back:
// "empty export - not implemented"). One whose config has no rootfs at all is
// refused before anything is sent (exit 3, nothing created) where the store refuses it:
// docker on the classic store (20.10 and 26), podman (its docker-archive reader refuses it);
// an OCI layout, containerd and docker on the containerd image store (through its
// containerd, which takes it as docker itself does) take it.
func TestZeroLayerImages(t *testing.T) {
	dir := t.TempDir()
	empty, none := filepath.Join(dir, "empty.tar"), filepath.Join(dir, "none.tar")
	zeroLayerBundle(t, empty, `"rootfs":{"type":"layers","diff_ids":[]},`)
	zeroLayerBundle(t, none, "")
	mustFerry(t, nil, "verify", empty)
	mustFerry(t, nil, "verify", none)
	refused := func(t *testing.T, env []string, args ...string) {
		t.Helper()
		if r := ferry(t, env, args...); r.code != 3 || !strings.Contains(r.stderr, `rootfs type is ""`) {
			t.Errorf("ferry %v: exit %d, stderr %q; want exit 3 naming the rootfs", args, r.code, r.stderr)
		}
	}

	for _, f := range testenv.DockerFlavors {
		t.Run(string(f), func(t *testing.T) {
			d := testenv.StartDockerFlavor(t, f)
			if d.ContainerdStore { // ferry loads through its containerd, which takes it as docker would
				mustFerry(t, dockerEnv(d), "load", "-i", none, "-q")
			} else {
				refused(t, dockerEnv(d), "load", "-i", none)
				if out := d.Run(t, "images", "-aq"); strings.TrimSpace(out) != "" {
					t.Errorf("the daemon holds images after a refused load: %s", out)
				}
			}
			mustFerry(t, dockerEnv(d), "load", "-i", empty, "-q")
			if got := d.Run(t, "image", "inspect", "zero:1", "--format", `{{len .RootFS.Layers}} {{index .Config.Labels "zero"}}`); got != "0 1\n" {
				t.Errorf("docker inspect zero:1: %q, want no layers and the label", got)
			}
			// docker saves it only from the containerd image store
			saved := filepath.Join(dir, string(f)+".tar")
			switch r := ferry(t, dockerEnv(d), "save", "zero:1", "-o", saved, "-q"); {
			case d.ContainerdStore && r.code == 0:
				mustFerry(t, nil, "verify", saved)
			case d.ContainerdStore || r.code != 1 || !strings.Contains(r.stderr, "empty export - not implemented"):
				t.Errorf("ferry save zero:1: exit %d, stderr %q", r.code, r.stderr)
			}
		})
	}

	t.Run("podman", func(t *testing.T) {
		pm := testenv.Podman5(t)
		env := []string{"PATH=" + pm.Wrapper(t) + ":/usr/sbin:/usr/bin:/sbin:/bin"}
		refused(t, env, "load", "-i", none, "--to", "podman")
		if out := pm.Run(t, "images", "-aq"); strings.TrimSpace(out) != "" {
			t.Errorf("podman holds images after a refused load: %s", out)
		}
		mustFerry(t, env, "load", "-i", empty, "--to", "podman", "-q")
		if got := pm.Run(t, "image", "inspect", "localhost/zero:1", "--format", `{{len .RootFS.Layers}} {{index .Labels "zero"}}`); got != "0 1\n" {
			t.Errorf("podman inspect zero:1: %q, want no layers and the label", got)
		}
	})

	t.Run("oci and containerd", func(t *testing.T) {
		skopeo, ctd := testenv.Skopeo118(t), testenv.StartContainerd(t)
		for _, bundle := range []string{empty, none} {
			layout := strings.TrimSuffix(bundle, ".tar") + "-layout"
			mustFerry(t, nil, "load", "-i", bundle, "--to", "oci:"+layout, "-q")
			if got := skopeo.Run(t, "inspect", "--format", `{{len .Layers}} {{index .Labels "zero"}}`, "oci:"+layout+":zero:1"); got != "0 1\n" {
				t.Errorf("skopeo inspect of the layout from %s: %q, want no layers and the label", bundle, got)
			}
			ns := filepath.Base(layout)
			mustFerry(t, []string{"CONTAINERD_ADDRESS=" + ctd.Socket}, "load", "-i", bundle, "--to", "containerd:"+ns, "-q")
			if got := ctd.Ctr(t, "-n", ns, "images", "ls", "-q"); got != "docker.io/library/zero:1\n" {
				t.Errorf("containerd images from %s: %q", bundle, got)
			}
		}
	})
}

// deepBundle writes a bundle, in docker 25's layout, of one image tagged deep:1 whose n
// layers are one layer n times.
func deepBundle(t *testing.T, path string, n int) {
	layer := markerLayer()
	layerDigest := sha256.Sum256(layer)
	diffIDs := strings.Repeat(fmt.Sprintf(`"sha256:%x",`, layerDigest), n)
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}`, strings.TrimSuffix(diffIDs, ","))
	configDigest := sha256.Sum256(config)
	descs := strings.Repeat(fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%x","size":%d},`, layerDigest, len(layer)), n)
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%x","size":%d},"layers":[%s]}`, configDigest, len(config), strings.TrimSuffix(descs, ","))
	manifestDigest := sha256.Sum256(manifest)
	index := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%x","size":%d,"annotations":{"io.containerd.image.name":"docker.io/library/deep:1","org.opencontainers.image.ref.name":"1"}}]}`, manifestDigest, len(manifest))
	paths := strings.Repeat(fmt.Sprintf(`"blobs/sha256/%x",`, layerDigest), n)
	writeTar(t, path, func(put func(name string, data []byte)) {
		put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
		put("index.json", index)
		put("manifest.json", fmt.Appendf(nil, `[{"Config":"blobs/sha256/%x","RepoTags":["deep:1"],"Layers":[%s]}]`, configDigest, strings.TrimSuffix(paths, ",")))
		put(fmt.Sprintf("blobs/sha256/%x", configDigest), config)
		put(fmt.Sprintf("blobs/sha256/%x", manifestDigest), manifest)
		put(fmt.Sprintf("blobs/sha256/%x", layerDigest), layer)
	})
}

// tree lists what is under dir: each path with its mode and the digest of its content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fi.Mode().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[p] += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLoadLayerCap: a bundle of an image of 126 layers (over docker's 125) is refused as
// it is read, exit 3, and an OCI layout it was loaded into is left as it was; one of 125
// layers loads.
func TestLoadLayerCap(t *testing.T) {
	dir := t.TempDir()
	ok, deep := filepath.Join(dir, "125.tar"), filepath.Join(dir, "126.tar")
	deepBundle(t, ok, 125)
	deepBundle(t, deep, 126)
	layout := filepath.Join(dir, "layout")
	mustFerry(t, nil, "load", "-i", ok, "--to", "oci:"+layout, "-q")
	before := tree(t, layout)
	for _, args := range [][]string{{"verify", deep}, {"load", "-i", deep, "--to", "oci:" + layout}} {
		if r := ferry(t, nil, args...); r.code != 3 || !strings.Contains(r.stderr, "126 layers") {
			t.Errorf("ferry %v: exit %d, stderr %q; want exit 3 naming 126 layers", args, r.code, r.stderr)
		}
	}
	if after := tree(t, layout); !maps.Equal(after, before) {
		t.Errorf("the refused load changed the layout:\n%v\nwas\n%v", after, before)
	}
	fresh := filepath.Join(dir, "fresh")
	ferry(t, nil, "load", "-i", deep, "--to", "oci:"+fresh)
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("the refused load made %s: %v", fresh, err)
	}
}

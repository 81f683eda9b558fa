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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	dir := t.TempDir()
	for _, order := range []string{"last", "first"} {
		bundle := filepath.Join(dir, order+".tar")
		manyEntries(t, bundle, 200_000, order == "first")
		for _, args := range [][]string{{"verify", bundle}, {"load", "-i", bundle, "--to", "oci:" + filepath.Join(dir, order), "-q"}} {
			cmd := exec.Command(ferryBin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("ferry %v: %v\n%s", args, err, stderr.String())
			}
			peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss >> 10 // KiB → MiB
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

// manyEntries writes a bundle of one image (a config, a layer) and n one-byte entries
// nothing refers to, with manifest.json first or last.
func manyEntries(t *testing.T, path string, n int, first bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	tw := tar.NewWriter(bw)
	put := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	lw.WriteHeader(&tar.Header{Name: "marker", Size: 2, Mode: 0o644, Typeflag: tar.TypeReg})
	lw.Write([]byte("x\n"))
	lw.Close()
	diffID := sha256.Sum256(layer.Bytes())
	config := fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%x"]},"config":{}}`, diffID)
	configPath, layerPath := fmt.Sprintf("blobs/sha256/%x", sha256.Sum256(config)), fmt.Sprintf("blobs/sha256/%x", diffID)
	manifest := fmt.Appendf(nil, `[{"Config":%q,"RepoTags":["many:1"],"Layers":[%q]}]`, configPath, layerPath)
	if first {
		put("manifest.json", manifest)
	}
	put(configPath, config)
	put(layerPath, layer.Bytes())
	for i := range n {
		put("tiny/"+strconv.Itoa(i), []byte{byte(i)})
	}
	if !first {
		put("manifest.json", manifest)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

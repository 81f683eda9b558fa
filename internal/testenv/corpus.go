package testenv

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RebuiltSet returns images as a monthly patch finds them, and their rebuild: each image
// is a base layer of real files (Go's own sources under src/net and src/encoding) and an
// app layer of a real binary (a tool of Go's toolchain, a different one per image) with
// sources. In the rebuild every file has a new mtime, one file in fifty is edited, a
// status file is regenerated, and each binary differs in a few bytes at four places (as a
// rebuilt binary's build ID does): every layer has a new digest while most of the content is
// the same. Layers are uncompressed, as docker saves them.
func RebuiltSet(t testing.TB, n int) (old, rebuilt []v1.Image) {
	t.Helper()
	goroot := runtime.GOROOT()
	src := readTree(t, goroot, "src/net", "src/encoding")
	tools := []string{"vet", "cover", "asm", "link"}[:n]
	for _, rebuild := range []bool{false, true} {
		base := layerOf(t, patch(src, rebuild), rebuild)
		for _, tool := range tools {
			bin, err := os.ReadFile(filepath.Join(goroot, "pkg/tool", runtime.GOOS+"_"+runtime.GOARCH, tool))
			if err != nil {
				t.Fatalf("RebuiltSet: %v", err)
			}
			app := readTree(t, goroot, "src/cmd/"+tool)
			if rebuild {
				bin = bytes.Clone(bin)
				for k := 1; k <= 4; k++ {
					copy(bin[len(bin)*k/5:], "rebuilt-build-id-0123456789")
				}
			}
			app["usr/local/bin/"+tool] = bin
			img, err := mutate.AppendLayers(empty.Image, base, layerOf(t, patch(app, rebuild), rebuild))
			if err != nil {
				t.Fatalf("RebuiltSet: %v", err)
			}
			if rebuild {
				rebuilt = append(rebuilt, img)
			} else {
				old = append(old, img)
			}
		}
	}
	return old, rebuilt
}

// readTree reads the regular files under dirs of root, by their paths under root.
func readTree(t testing.TB, root string, dirs ...string) map[string][]byte {
	files := map[string][]byte{}
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			data, err := os.ReadFile(p)
			rel, _ := filepath.Rel(root, p)
			files[filepath.ToSlash(rel)] = data
			return err
		})
		if err != nil {
			t.Fatalf("RebuiltSet: %v", err)
		}
	}
	return files
}

// patch returns files as the rebuild has them: one in fifty edited, the status file new.
func patch(files map[string][]byte, rebuild bool) map[string][]byte {
	out := map[string][]byte{"var/lib/status": []byte("built\n")}
	for i, name := range sortedKeys(files) {
		out[name] = files[name]
		if rebuild && i%50 == 7 {
			out[name] = append(bytes.Clone(files[name]), "\n// patched\n"...)
		}
	}
	if rebuild {
		out["var/lib/status"] = []byte("rebuilt on a patched base\n")
	}
	return out
}

// layerOf returns an uncompressed layer of files, sorted, all with one mtime: the rebuild's
// a day later.
func layerOf(t testing.TB, files map[string][]byte, rebuild bool) v1.Layer {
	mtime := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if rebuild {
		mtime = mtime.Add(24 * time.Hour)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range sortedKeys(files) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(files[name])), ModTime: mtime}); err != nil {
			t.Fatalf("RebuiltSet: %v", err)
		}
		tw.Write(files[name])
	}
	tw.Close()
	return static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
}

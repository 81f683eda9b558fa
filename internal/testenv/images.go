package testenv

import (
	"archive/tar"
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RandomImages returns a random one-layer base of baseSize bytes and n images that each add
// a random layer of layerSize bytes on top of it, so they share the base.
func RandomImages(t testing.TB, baseSize, layerSize int64, n int) (base v1.Image, imgs []v1.Image) {
	t.Helper()
	base, err := random.Image(baseSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		l, err := random.Layer(layerSize, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, l)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return base, imgs
}

// BusyboxV1 returns a runnable image built in memory, with no daemon: a gzip-compressed
// layer holding busybox and its applets (as BusyboxImage's rootfs), then, for each map of
// files (path -> content) given, an uncompressed layer holding them, as docker saves its
// layers. CMD is /bin/sh; the platform is linux on this machine's architecture.
func BusyboxV1(t testing.TB, files ...map[string]string) v1.Image {
	t.Helper()
	bin, err := os.ReadFile(Require(t, "busybox"))
	if err != nil {
		t.Fatalf("BusyboxV1: %v", err)
	}
	rootfs := busyboxTar(bin, nil)
	base, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(rootfs)), nil })
	if err != nil {
		t.Fatalf("BusyboxV1: %v", err)
	}
	layers := []v1.Layer{base}
	for _, f := range files {
		layers = append(layers, static.NewLayer(FilesTar(f), types.OCIUncompressedLayer))
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatalf("BusyboxV1: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("BusyboxV1: %v", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Cmd = []string{"/bin/sh"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatalf("BusyboxV1: %v", err)
	}
	return img
}

// FilesTar returns a tar of files (path -> content), sorted, with fixed times: a layer
// built with no daemon.
func FilesTar(files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, key := range sortedKeys(files) {
		name := strings.TrimPrefix(path.Clean("/"+key), "/")
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(files[key])), ModTime: time.Unix(0, 0)})
		tw.Write([]byte(files[key]))
	}
	tw.Close()
	return buf.Bytes()
}

// RandomData returns n bytes that do not compress, quickly.
func RandomData(n int) []byte {
	data := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16)}).Read(data)
	return data
}

// RandomText returns n bytes of words: text that compresses, differently at each level.
func RandomText(n int) []byte {
	words := []string{"layer ", "blob ", "docker ", "ferry ", "\n", "containerd ", "zstd "}
	var b bytes.Buffer
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

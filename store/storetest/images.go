package storetest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store/docker"
	"github.com/ferrytool/ferry/transfer"
)

// Repo is the repository of the images the suite loads: Repo:1, Repo:2 and Repo:3.
const Repo = "ferry-conform/app"

// Images are the bundles the suite loads: three images deriving from one base, each with
// /marker holding "app N\n", and app:2 and app:3 with 2 and 1 MiB of random data besides;
// and a delta of app:2 that leaves the base out.
type Images struct {
	App1, App2, App3 string // bundle files of Repo:1, :2 and :3, complete
	Thin2            string // Repo:2 without the base layer
	// IDs are the images' IDs by tag, as the place that made them names them (its config
	// digest).
	IDs map[string]string
	// Bundles are the files' bundles, as written, by file.
	Bundles map[string]*archive.Bundle
}

// files are the files of image n's own layer.
func files(n int) map[string]string {
	files := map[string]string{"marker": fmt.Sprintf("app %d\n", n)}
	if n > 1 {
		files["data"] = string(testenv.RandomData((4 - n) << 20)) // 2 MiB, 1 MiB
	}
	return files
}

// DockerImages builds the images in a throwaway dockerd, on busybox so that they run, and
// saves the bundles from it with ferry.
func DockerImages(t *testing.T) *Images {
	t.Helper()
	src := testenv.StartDocker(t)
	src.BusyboxImage(t, "ferry-conform/base:1", map[string]string{"/etc/base": "base\n"})
	imgs := &Images{IDs: map[string]string{}, Bundles: map[string]*archive.Bundle{}}
	for n := 1; n <= 3; n++ {
		tag := fmt.Sprintf("%s:%d", Repo, n)
		imgs.IDs[tag] = src.DeriveImage(t, tag, "ferry-conform/base:1", files(n))
	}
	c, err := docker.New(src.Host)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	save := func(name, image string, have *dedupe.Inventory) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := transfer.Save(t.Context(), f, []string{image}, transfer.SaveOptions{Store: docker.NewStore(c), Have: have})
		if err != nil {
			t.Fatalf("saving %s: %v", image, err)
		}
		imgs.Bundles[path] = b
		return path
	}
	imgs.App1 = save("app1.tar", Repo+":1", nil)
	imgs.App2 = save("app2.tar", Repo+":2", nil)
	imgs.App3 = save("app3.tar", Repo+":3", nil)
	base := save("base.tar", "ferry-conform/base:1", nil)
	imgs.Thin2 = save("thin2.tar", Repo+":2", dedupe.BundleInventory(imgs.Bundles[base]))
	imgs.checkThin(t)
	return imgs
}

// MemImages builds the images in memory, with no binary: a base layer of 512 KiB of random
// data and /etc/base, each image's own layer on top of it, uncompressed as docker saves
// layers. They do not run; a store that holds them holds their files.
func MemImages(t *testing.T) *Images {
	t.Helper()
	layer := func(files map[string]string) v1.Layer {
		return static.NewLayer(testenv.FilesTar(files), types.OCIUncompressedLayer)
	}
	image := func(layers ...v1.Layer) v1.Image {
		img, err := mutate.AppendLayers(empty.Image, layers...)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.DeepCopy()
		cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
		cfg.Config.Cmd = []string{"/bin/sh"}
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		return img
	}
	base := layer(map[string]string{"etc/base": "base\n", "base.data": string(testenv.RandomData(512 << 10))})
	imgs := &Images{IDs: map[string]string{}, Bundles: map[string]*archive.Bundle{}}
	dir := t.TempDir()
	write := func(name string, b *archive.Bundle, src archive.V1Source) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := archive.Write(t.Context(), f, b, src, archive.WriteOptions{}); err != nil {
			t.Fatalf("writing %s: %v", name, err)
		}
		imgs.Bundles[path] = b
		return path
	}
	bundle := func(img v1.Image, tag string) (*archive.Bundle, archive.V1Source) {
		b, src := &archive.Bundle{}, archive.V1Source{}
		if _, err := b.AddImage(img, []string{tag}, src); err != nil {
			t.Fatal(err)
		}
		return b, src
	}
	var app2 *archive.Bundle
	var app2Src archive.V1Source
	for n, file := range []*string{&imgs.App1, &imgs.App2, &imgs.App3} {
		tag := fmt.Sprintf("%s:%d", Repo, n+1)
		img := image(base, layer(files(n+1)))
		id, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		imgs.IDs[tag] = id.String()
		b, src := bundle(img, tag)
		*file = write(fmt.Sprintf("app%d.tar", n+1), b, src)
		if n+1 == 2 {
			app2, app2Src = b, src
		}
	}
	baseBundle, _ := bundle(image(base), "ferry-conform/base:1")
	imgs.Thin2 = write("thin2.tar", dedupe.BundleInventory(baseBundle).Thin(app2), app2Src)
	imgs.checkThin(t)
	return imgs
}

// checkThin fails t unless the delta leaves out the base layer only.
func (imgs *Images) checkThin(t *testing.T) {
	t.Helper()
	if l := imgs.Bundles[imgs.Thin2].Images[0].Layers; !l[0].Missing || l[1].Missing {
		t.Fatalf("the delta of app:2 carries the wrong layers")
	}
}

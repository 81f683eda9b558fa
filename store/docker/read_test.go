package docker

import (
	"archive/tar"
	"bytes"
	"fmt"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
)

// fileTree is a layer of n files whose sizes spread from 0 to twice mean bytes, and the
// bytes of those files: what the daemon counts as the layer's size.
func fileTree(t *testing.T, n, mean int) (v1.Layer, int64) {
	t.Helper()
	var buf bytes.Buffer
	var size int64
	tw := tar.NewWriter(&buf)
	for i := range n {
		data := bytes.Repeat([]byte{byte(i)}, (i*7919)%(2*mean+1))
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("usr/share/%d/%d", i%17, i), Mode: 0o644, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
		size += int64(len(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return static.NewLayer(buf.Bytes(), types.DockerLayer), size
}

// TestSaveEstimate: for two images of files the size of Debian's (a mean of 12 KiB) on one
// base, the estimate of a save is at least what it carries, as docker 25 and later save them
// (the layout Write writes), and not much more when the histories give the layers' sizes; an
// image two references name counts once.
func TestSaveEstimate(t *testing.T) {
	var imgs []savedImage
	b, src := &archive.Bundle{}, archive.V1Source{}
	base, baseSize := fileTree(t, 500, 12<<10)
	for i, files := range []int{20, 300} {
		layer, size := fileTree(t, files, 12<<10)
		img, err := mutate.AppendLayers(empty.Image, base, layer)
		if err != nil {
			t.Fatal(err)
		}
		im, err := b.AddImage(img, []string{fmt.Sprintf("app:%d", i)}, src)
		if err != nil {
			t.Fatal(err)
		}
		history := []int64{baseSize, 0, size, 0} // steps of no layer between
		imgs = append(imgs, savedImage{id: im.ID().String(), size: baseSize + size, diffIDs: im.DiffIDs(), sizes: layerSizes(history, 2)})
	}
	var saved bytes.Buffer
	if err := archive.Write(t.Context(), &saved, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	n := int64(saved.Len())
	est := saveEstimate(imgs)
	if est < n || est > n*13/10 {
		t.Errorf("estimate %d for a save of %d bytes, want at least that and under 30 %% more", est, n)
	}
	if again := saveEstimate(append(imgs, imgs[0])); again != est {
		t.Errorf("an image named twice: estimate %d, want %d", again, est)
	}
	for i := range imgs {
		imgs[i].sizes = nil
	}
	if unknown := saveEstimate(imgs); unknown < est {
		t.Errorf("without the layers' sizes: estimate %d, want at least %d", unknown, est)
	}
}

// TestLayerSizes: the sizes of an image's layers are the steps of its history that added
// bytes, when there is one per layer.
func TestLayerSizes(t *testing.T) {
	for _, c := range []struct {
		history []int64
		layers  int
		want    []int64
	}{
		{[]int64{100, 0, 0, 20, 0}, 2, []int64{100, 20}},
		{[]int64{100}, 1, []int64{100}},
		{[]int64{100, 0, 20}, 3, nil}, // a layer of no bytes: which step made it?
		{nil, 0, nil},
	} {
		if got := layerSizes(c.history, c.layers); !slices.Equal(got, c.want) {
			t.Errorf("layerSizes(%v, %d) = %v, want %v", c.history, c.layers, got, c.want)
		}
	}
}

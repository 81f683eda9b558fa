package testenv

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
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

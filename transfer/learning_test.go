package transfer

import (
	"io"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/testenv"
)

// TestLearning: a load learns the layers it reads to their end, and only those, once it
// succeeded; a layer closed twice is closed once.
func TestLearning(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	_, rebuilt := testenv.RebuiltSet(t, 1)
	ls, err := rebuilt[0].Layers()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(img, []string{"app:1"}, src); err != nil {
		t.Fatal(err)
	}
	layers := b.LayerOrder()
	s := newLearning(b, src)
	for i, l := range layers {
		rc, err := s.Open(t.Context(), l.Blob)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			_, err = io.Copy(io.Discard, rc)
		} else {
			_, err = io.CopyN(io.Discard, rc, l.Size/2) // cut short: not learnt
		}
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		rc.Close()
	}
	s.save()
	cache := content.NewCache(contentCache())
	for i, l := range layers {
		if got := cache.Load(content.NewIndex(), l.DiffID); got != (i == 0) {
			t.Errorf("layer %d (%s) learnt: %v, want %v", i, l.DiffID, got, i == 0)
		}
	}
}

package transfer

import (
	"bytes"
	"io"
	"testing"

	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/mem"
)

// TestLearning: a load learns the layers of a content delta it reads to their end, and only
// those, once it succeeded: from their recipes where the cache knows the layers they are
// built on, else by reading them; a layer closed twice is closed once.
func TestLearning(t *testing.T) {
	ctx := t.Context()
	old, rebuilt := testenv.RebuiltSet(t, 1)
	_, _, oldBundle := bundleOf(t, old[0], "app:1")
	b, src, _ := bundleOf(t, rebuilt[0], "app:1")
	for _, known := range []bool{true, false} {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		st := mem.New("mem")
		if err := st.Seed(ctx, oldBundle); err != nil {
			t.Fatal(err)
		}
		im, err := st.Open(ctx, []string{"app:1"}, store.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		x, err := indexImages(ctx, content.NewCache(contentCache()), im)
		if err != nil {
			t.Fatal(err)
		}
		if !known { // the cache where the load learns knows nothing of the store's layers
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
		}
		var delta bytes.Buffer
		if _, err := content.Make(ctx, &delta, b, src, x, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		rb, err := content.Rebuild(ctx, &delta, storeBase{st, nil}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		layers := rb.Bundle.LayerOrder()
		s := newLearning(rb)
		for i, l := range layers {
			rc, err := s.Open(ctx, l.Blob)
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
		rb.Close()
		cache := content.NewCache(contentCache())
		for i, l := range layers {
			if got := cache.Load(content.NewIndex(), l.DiffID); got != (i == 0) {
				t.Errorf("base layers known %v: layer %d (%s) learnt: %v, want %v", known, i, l.DiffID, got, i == 0)
			}
		}
	}
}

package transfer

import (
	"bytes"
	"context"
	"slices"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/mem"
)

// counting is a store that counts the reads of its images.
type counting struct {
	*mem.Store
	opens atomic.Int32
}

func (c *counting) Open(ctx context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	c.opens.Add(1)
	return c.Store.Open(ctx, refs, opts)
}

// bundleOf is img as a bundle, tagged tag.
func bundleOf(t *testing.T, img v1.Image, tag string) (*archive.Bundle, archive.V1Source, []byte) {
	t.Helper()
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(img, []string{tag}, src); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.Write(t.Context(), &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return b, src, buf.Bytes()
}

// TestPrefetch: a content delta loads from the images read ahead of it (by the helper, while
// the delta was made), not read again; without, the load reads them itself.
func TestPrefetch(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx := t.Context()
	old, rebuilt := testenv.RebuiltSet(t, 1)
	_, _, oldBundle := bundleOf(t, old[0], "app:1")
	b, src, _ := bundleOf(t, rebuilt[0], "app:1")
	for _, ahead := range []bool{true, false} {
		st := &counting{Store: mem.New("mem")}
		if err := st.Seed(ctx, oldBundle); err != nil {
			t.Fatal(err)
		}
		im, err := st.Open(ctx, []string{"app:1"}, store.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		x, err := indexImages(ctx, content.NewCache(""), im)
		if err != nil {
			t.Fatal(err)
		}
		var delta bytes.Buffer
		if sum, err := content.Make(ctx, &delta, b, src, x, t.TempDir()); err != nil || sum.Base == 0 {
			t.Fatalf("a delta over no layer of the store: %+v, %v", sum, err)
		}
		opts := LoadOptions{Store: st}
		if ahead {
			opts.base = startPrefetch(ctx, st, []string{"app:1", "gone:1"})
			opts.base.images()
			defer opts.base.close()
		}
		before := st.opens.Load()
		if _, err := Load(ctx, bytes.NewReader(delta.Bytes()), opts); err != nil {
			t.Fatal(err)
		}
		if id, ok := st.ID("app:1"); !ok || id.String() != b.Images[0].ID().String() {
			t.Errorf("app:1 is %s in the store, want %s", id, b.Images[0].ID())
		}
		if read := st.opens.Load() - before; (read == 0) != ahead {
			t.Errorf("read ahead %v: the load read the store's images %d times", ahead, read)
		}
	}
}

// TestLikelyBase: the images read ahead are the store's of the repositories sent, each once,
// in the store's words.
func TestLikelyBase(t *testing.T) {
	x := content.NewIndex()
	x.Layers = []content.Layer{{Refs: []string{"app:0", "other:1"}}, {Refs: []string{"app:0"}}, {Refs: []string{"localhost:5000/app:2", "library/app:3"}}}
	got := likelyBase(x, []string{"index.docker.io/library/app", "localhost:5000/app"})
	if want := []string{"app:0", "localhost:5000/app:2", "library/app:3"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

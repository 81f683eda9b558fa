package pool_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/pool"
	"github.com/ferrytool/ferry/store/storetest"
)

// TestConformance runs the store conformance suite against a pool, each load a bundle of
// its own; skopeo reads the images back, and the pool gives back what went in.
func TestConformance(t *testing.T) {
	skopeo := testenv.Require(t, "skopeo")
	imgs := storetest.DockerImages(t)
	dir := filepath.Join(t.TempDir(), "pool")
	if _, err := dedupe.InitPool(dir); err != nil {
		t.Fatal(err)
	}
	var bundle string // the name of the last bundle added
	n := 0
	storetest.Run(t, imgs, storetest.Target{
		Ref: "pool:" + dir,
		LoadRef: func() string {
			n++
			bundle = fmt.Sprintf("b%d", n)
			return "pool:" + dir + ":" + bundle
		},
		State: func(t *testing.T) string { return storetest.ListTree(t, dir) },
		Check: func(t *testing.T, tag, _ string) {
			storetest.CheckConfig(t, skopeo, "oci:"+dir+":"+bundle+"/"+tag, imgs.IDs[tag])
			// The pool gives back the bundle that went in, byte for byte, and a delta
			// completed from the layers it holds.
			file := map[string]string{storetest.Repo + ":1": imgs.App1, storetest.Repo + ":2": imgs.App2}[tag]
			st, err := store.Open(t.Context(), "pool:"+dir, store.Env{})
			if err != nil {
				t.Fatal(err)
			}
			im, err := st.(*pool.Store).Open(t.Context(), []string{bundle}, store.ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			h := sha256.New()
			if err := im.Write(t.Context(), h, im.Bundle, archive.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(file)
			if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Errorf("pool export of %s differs from %s", bundle, file)
			}
		},
	})
}

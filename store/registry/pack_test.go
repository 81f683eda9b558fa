package registry_test

import (
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store/storetest"
	"github.com/ferrytool/ferry/transfer"
)

// TestConformanceInMemory runs the store conformance suite against go-containerregistry's
// registry in memory, with images whose layers are uncompressed, as docker saves them: each
// image pushed holds its config and its layers gzip-compressed.
func TestConformanceInMemory(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	imgs := storetest.MemImages(t)
	storetest.Run(t, imgs, storetest.Target{
		Ref:   "registry:" + addr + "/mirror",
		State: func(t *testing.T) string { return registryState(t, addr) },
		Check: func(t *testing.T, tag, _ string) {
			img := pushed(t, addr+"/mirror/"+tag)
			if id, err := img.ConfigName(); err != nil || id.String() != imgs.IDs[tag] {
				t.Errorf("%s: config %v (%v), want %s", tag, id, err, imgs.IDs[tag])
			}
			checkGzip(t, tag, img)
		},
	})
}

// pushed reads image ref back from the registry.
func pushed(t *testing.T, ref string) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("reading %s back: %v", ref, err)
	}
	return img
}

// checkGzip fails t unless every layer of img is a gzip blob whose content is the layer its
// config names.
func checkGzip(t *testing.T, tag string, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		mt, _ := l.MediaType()
		if archive.GzipType(mt) != "" || !strings.HasSuffix(string(mt), "gzip") {
			t.Errorf("%s: layer %d is %s, want it gzip-compressed", tag, i, mt)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || got != cfg.RootFS.DiffIDs[i] {
			t.Errorf("%s: layer %d uncompresses to %s (%v), its diffID is %s", tag, i, got, err, cfg.RootFS.DiffIDs[i])
		}
	}
}

// TestThinAcrossRepositories loads a bundle that leaves out its base layer, uncompressed,
// into a repository that lacks it, while another repository under the store's base holds
// it compressed: the push names that blob, mounted from there.
func TestThinAcrossRepositories(t *testing.T) {
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	imgs := storetest.MemImages(t)
	load := func(to, path string) error {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, err = transfer.Load(t.Context(), f, transfer.LoadOptions{To: to})
		return err
	}
	if err := load("registry:"+addr+"/mirror", imgs.App1); err != nil {
		t.Fatal(err)
	}
	if err := load("registry:"+addr+"/other", imgs.Thin2); !errors.Is(err, archive.ErrMissingBlob) {
		t.Fatalf("a thin bundle into a prefix holding none of its base: got %v, want archive.ErrMissingBlob", err)
	}
	if err := load("registry:"+addr, imgs.Thin2); err != nil {
		t.Fatalf("a thin bundle whose base another repository holds: %v", err)
	}
	tag := storetest.Repo + ":2"
	img := pushed(t, addr+"/"+tag)
	if id, err := img.ConfigName(); err != nil || id.String() != imgs.IDs[tag] {
		t.Errorf("%s: config %v (%v), want %s", tag, id, err, imgs.IDs[tag])
	}
	checkGzip(t, tag, img)
}

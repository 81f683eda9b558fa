package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store/mem"
)

// artifactBundle writes a bundle of an artifact of its own (a chart), and, with image, an
// image it does not refer to.
func artifactBundle(t *testing.T, image bool) []byte {
	t.Helper()
	b, src := &archive.Bundle{}, archive.V1Source{}
	if image {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddImage(img, []string{"example.com/app:1"}, src); err != nil {
			t.Fatal(err)
		}
	}
	config := static.NewLayer([]byte(`{"name":"chart"}`), "application/vnd.cncf.helm.config.v1+json")
	chart := static.NewLayer([]byte("chart"), "application/vnd.cncf.helm.chart.content.v1.tar+gzip")
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	for i, l := range []v1.Layer{config, chart} {
		d, _ := partial.Descriptor(l)
		src[d.Digest] = l
		if i == 0 {
			m.Config = *d
		} else {
			m.Layers = []v1.Descriptor{*d}
		}
	}
	raw, _ := json.Marshal(m)
	if _, err := b.AddArtifact(raw, types.OCIManifestSchema1, []string{"example.com/charts/chart:1"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.Write(context.Background(), &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLoadImagesOnly: a store that holds images only takes a bundle's images and is told in
// one line what it leaves out; a bundle of artifacts alone it refuses, unchanged.
func TestLoadImagesOnly(t *testing.T) {
	st := mem.New("mem")
	var notes []string
	opts := LoadOptions{Store: st, Options: Options{Note: func(s string) { notes = append(notes, s) }}}
	if _, err := Load(context.Background(), bytes.NewReader(artifactBundle(t, false)), opts); !errors.Is(err, ErrImagesOnly) {
		t.Fatalf("load of a chart alone: %v, want %v", err, ErrImagesOnly)
	}
	if st.Loads() != 0 || len(st.Tags()) != 0 {
		t.Fatalf("a refused load changed the store: %d loads, tags %v", st.Loads(), st.Tags())
	}
	if _, err := Load(context.Background(), bytes.NewReader(artifactBundle(t, true)), opts); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "left out 1 artifact (1 application/vnd.cncf.helm.config.v1+json)") {
		t.Fatalf("notes: %q", notes)
	}
	if tags := st.Tags(); len(tags) != 1 || tags[0] != "example.com/app:1" {
		t.Fatalf("the store holds %v", tags)
	}
}

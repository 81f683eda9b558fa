package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testArtifact returns an artifact manifest of one layer, payload, with subject if set (a
// referrer) and an empty config, or else an image config as cosign's tag scheme signatures
// have; its blobs are put in src.
func testArtifact(t *testing.T, src V1Source, subject *v1.Descriptor, layerType types.MediaType, payload string) []byte {
	t.Helper()
	layer := static.NewLayer([]byte(payload), layerType)
	config := static.NewLayer([]byte("{}"), types.MediaType("application/vnd.oci.empty.v1+json"))
	if subject == nil {
		diffID, _ := layer.Digest()
		cfg, _ := json.Marshal(v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}}})
		config = static.NewLayer(cfg, types.OCIConfigJSON)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Subject: subject}
	for i, l := range []v1.Layer{config, layer} {
		desc, err := partial.Descriptor(l)
		if err != nil {
			t.Fatal(err)
		}
		src[desc.Digest] = l
		if i == 0 {
			m.Config = *desc
		} else {
			m.Layers = append(m.Layers, *desc)
		}
	}
	if subject != nil {
		m.ArtifactType = "application/vnd.dev.cosign.artifact.sig.v1+json"
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// signedBundle is an image with a signature by the tag scheme, a referrer, and a signature
// of the referrer by the tag scheme.
func signedBundle(t *testing.T) (*Bundle, V1Source) {
	a, _ := testImages(t)
	b, src := &Bundle{}, V1Source{}
	img, err := b.AddImage(a, []string{"example.com/a:1"}, src)
	if err != nil {
		t.Fatal(err)
	}
	subject := img.Manifest.Digest
	sig := testArtifact(t, src, nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{}}`)
	ref := testArtifact(t, src, &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: subject, Size: img.Manifest.Size}, "application/vnd.dev.sigstore.bundle.v0.3+json", `{"bundle":1}`)
	refSig := testArtifact(t, src, nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"ref":1}}`)
	for _, add := range []struct {
		raw  []byte
		tags []string
	}{{sig, []string{SchemeTag(subject, "sig")}}, {ref, nil}, {refSig, []string{SchemeTag(sha256Hash(ref), "sig")}}} {
		if _, err := b.AddArtifact(add.raw, types.OCIManifestSchema1, add.tags); err != nil {
			t.Fatal(err)
		}
	}
	return b, src
}

func writeTo(t *testing.T, b *Bundle, src BlobSource) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, b, src, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestArtifacts: artifacts are written reachable from index.json only, read back with their
// subjects and tags, listed under their image, and written again whole.
func TestArtifacts(t *testing.T) {
	b, src := signedBundle(t)
	data := writeTo(t, b, src)
	got, err := Read(context.Background(), bytes.NewReader(data), Discard, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Images) != 1 || len(got.Artifacts) != 3 {
		t.Fatalf("read %d images and %d artifacts, want 1 and 3", len(got.Images), len(got.Artifacts))
	}
	var manifest []dockerManifest
	if err := json.Unmarshal(untar(t, data).get(t, "manifest.json").data, &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json lists %d images, want the image alone", len(manifest))
	}
	img := got.Images[0]
	s := got.Summary()
	refs := s.Images[0].Referrers
	if len(refs) != 2 || s.Artifacts != 3 {
		t.Fatalf("ls lists %d referrers of the image (of %d artifacts), want 2 (of 3): %+v", len(refs), s.Artifacts, refs)
	}
	for _, r := range refs {
		if r.Subject != img.Manifest.Digest.String() {
			t.Errorf("referrer %s: subject %s, want %s", r.Digest, r.Subject, img.Manifest.Digest)
		}
		nested := len(r.Referrers)
		if (len(r.Tags) == 0) != (nested == 1) {
			t.Errorf("referrer %s (tags %v) has %d referrers; the referrer found by subject has a signature", r.Digest, r.Tags, nested)
		}
	}
	again, err := Read(context.Background(), bytes.NewReader(writeTo(t, got, src)), Discard, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(digests(again.Reachable()), digests(b.Reachable())) || len(again.Artifacts) != 3 {
		t.Fatal("the bundle read back and written again holds other blobs")
	}
}

func digests(blobs []*Blob) []v1.Hash {
	var out []v1.Hash
	for _, b := range blobs {
		out = append(out, b.Digest)
	}
	return out
}

// TestArtifactRefused: an artifact whose subject the bundle lacks, and artifacts referring to
// each other in a loop, are refused.
func TestArtifactRefused(t *testing.T) {
	a, _ := testImages(t)
	orphan := func(t *testing.T, b *Bundle, src V1Source) {
		raw := testArtifact(t, src, &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: sha256Hash([]byte("gone")), Size: 4}, "text/plain", "x")
		b.AddArtifact(raw, types.OCIManifestSchema1, nil)
	}
	loop := func(t *testing.T, b *Bundle, src V1Source) {
		x := testArtifact(t, src, nil, "text/plain", "x")
		y := testArtifact(t, src, nil, "text/plain", "y")
		b.AddArtifact(x, types.OCIManifestSchema1, []string{SchemeTag(sha256Hash(y), "sig")})
		b.AddArtifact(y, types.OCIManifestSchema1, []string{SchemeTag(sha256Hash(x), "sig")})
	}
	for _, tc := range []struct {
		name string
		add  func(*testing.T, *Bundle, V1Source)
		want error
	}{{"subject missing", orphan, ErrMissingBlob}, {"loop", loop, ErrInvalidMetadata}} {
		t.Run(tc.name, func(t *testing.T) {
			b, src := &Bundle{}, V1Source{}
			if _, err := b.AddImage(a, []string{"example.com/a:1"}, src); err != nil {
				t.Fatal(err)
			}
			tc.add(t, b, src)
			_, err := Read(context.Background(), bytes.NewReader(writeTo(t, b, src)), Discard, ReadOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("read: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseReferrers(t *testing.T) {
	sigType := "application/vnd.dev.cosign.artifact.sig.v1+json"
	for _, tc := range []struct {
		in        string
		typ, tag  string
		takes, ok bool
	}{
		{"all", "text/plain", "", true, true},
		{"none", sigType, "", false, true},
		{"sig", sigType, "", true, true},
		{"sig", "application/vnd.dev.cosign.simplesigning.v1+json", "sha256-" + sha256Hash(nil).Hex + ".sig", true, true},
		{"att,sbom", sigType, "", false, true},
		{"sbom", "text/spdx+json", "", true, true},
		{"application/vnd.cncf.helm.config.v1+json", "application/vnd.cncf.helm.config.v1+json", "", true, true},
		{"signatures", "", "", false, false},
		{"sig,", "", "", false, false},
		{"all,sig", "", "", false, false},
	} {
		r, err := ParseReferrers(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseReferrers(%q): %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if got := r.Takes(tc.typ, tc.tag); err == nil && got != tc.takes {
			t.Errorf("ParseReferrers(%q).Takes(%q, %q) = %v, want %v", tc.in, tc.typ, tc.tag, got, tc.takes)
		}
	}
}

// TestArtifactHostile: an artifact whose tag names itself as its subject is refused; an index
// tagged as its own signature is read as the index it is; ten thousand referrers of one
// image are read, listed and said left out, each once.
func TestArtifactHostile(t *testing.T) {
	a, _ := testImages(t)
	t.Run("artifact referring to itself", func(t *testing.T) {
		b, src := &Bundle{}, V1Source{}
		if _, err := b.AddImage(a, []string{"example.com/a:1"}, src); err != nil {
			t.Fatal(err)
		}
		raw := testArtifact(t, src, nil, "text/plain", "self")
		if _, err := b.AddArtifact(raw, types.OCIManifestSchema1, []string{SchemeTag(sha256Hash(raw), "sig")}); err != nil {
			t.Fatal(err)
		}
		_, err := Read(context.Background(), bytes.NewReader(writeTo(t, b, src)), Discard, ReadOptions{})
		if !errors.Is(err, ErrInvalidMetadata) {
			t.Fatalf("read: %v, want %v", err, ErrInvalidMetadata)
		}
	})
	t.Run("index tagged as its own signature", func(t *testing.T) {
		b, src := &Bundle{}, V1Source{}
		idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: a, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: HostPlatform().Architecture}}})
		if _, err := b.AddIndex(idx, []string{"example.com/a:1"}, HostPlatform(), src); err != nil {
			t.Fatal(err)
		}
		d, _ := idx.Digest()
		self := b.Index.Manifests[0]
		self.Annotations = map[string]string{annotationRefName: SchemeTag(d, "sig")}
		b.Index.Manifests = append(b.Index.Manifests, self)
		got, err := Read(context.Background(), bytes.NewReader(writeTo(t, b, src)), Discard, ReadOptions{})
		if err != nil || len(got.Images) != 1 || len(got.Artifacts) != 0 {
			t.Fatalf("read: %v", err)
		}
	})
	t.Run("ten thousand referrers", func(t *testing.T) {
		b, src := &Bundle{}, V1Source{}
		img, err := b.AddImage(a, []string{"example.com/a:1"}, src)
		if err != nil {
			t.Fatal(err)
		}
		subject := &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: img.Manifest.Digest, Size: img.Manifest.Size}
		const n = 10000
		for i := range n {
			raw := testArtifact(t, src, subject, "application/spdx+json", strconv.Itoa(i))
			if _, err := b.AddArtifact(raw, types.OCIManifestSchema1, nil); err != nil {
				t.Fatal(err)
			}
		}
		got, err := Read(context.Background(), bytes.NewReader(writeTo(t, b, src)), Discard, ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s := got.Summary(); s.Artifacts != n || len(s.Images[0].Referrers) != n {
			t.Fatalf("%d artifacts, %d listed under the image; want %d", s.Artifacts, len(s.Images[0].Referrers), n)
		}
		if o := got.OCIOnly().String(); o != "10000 artifacts (10000 signatures)" {
			t.Fatalf("OCIOnly: %q", o)
		}
	})
}

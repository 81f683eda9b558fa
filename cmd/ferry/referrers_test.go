package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ociLayout "github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// A registry pair: where images are signed (near) and an isolated one they are loaded into
// (far), of one kind: both serve the referrers API, or neither does (tag scheme, and the
// fallback tag index for referrers).
type registryKind struct {
	name  string
	start func(t *testing.T) string
}

var registryKinds = []registryKind{
	{"referrers API", func(t *testing.T) string { return testenv.StartReferrersRegistry(t) }},
	{"docker-registry", func(t *testing.T) string { return testenv.StartRegistry(t).Addr }},
}

// rawManifest is a manifest as remote.Put takes it.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// pushArtifact pushes to ref an artifact of one layer, payload of layerType: a referrer of
// subject when it is set (an empty config and artifactType), else one whose config is an
// image's, as cosign's tag scheme signatures are. It returns the manifest's digest.
func pushArtifact(t *testing.T, repo name.Repository, tag string, subject *v1.Descriptor, layerType types.MediaType, payload string) v1.Hash {
	t.Helper()
	layer := static.NewLayer([]byte(payload), layerType)
	config := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	if subject == nil {
		diffID, _ := layer.Digest()
		cfg, _ := json.Marshal(v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}}})
		config = static.NewLayer(cfg, types.OCIConfigJSON)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Subject: subject}
	if subject != nil {
		m.ArtifactType = string(layerType)
	}
	for i, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatal(err)
		}
		d, _ := partial.Descriptor(l)
		if i == 0 {
			m.Config = *d
		} else {
			m.Layers = []v1.Descriptor{*d}
		}
	}
	raw, _ := json.Marshal(m)
	digest, _, _ := v1.SHA256(bytes.NewReader(raw))
	ref := name.Reference(repo.Digest(digest.String()))
	if tag != "" {
		ref = repo.Tag(tag)
	}
	if err := remote.Put(ref, rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
	return digest
}

// signed pushes an image to near/app:1 with a signature by the tag scheme, an SBOM that
// refers to it by subject, and a signature of the SBOM by the tag scheme. It returns the
// image's descriptor and the three artifacts' digests.
func signed(t *testing.T, near string) (v1.Descriptor, []v1.Hash) {
	t.Helper()
	repo, err := name.NewRepository(near + "/app")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("1"), testenv.BusyboxV1(t, map[string]string{"marker": "signed\n"})); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Get(repo.Tag("1"))
	if err != nil {
		t.Fatal(err)
	}
	img := got.Descriptor
	sig := pushArtifact(t, repo, archive.SchemeTag(img.Digest, "sig"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"image":1}}`)
	sbom := pushArtifact(t, repo, "", &img, "application/spdx+json", `{"spdxVersion":"SPDX-2.3"}`)
	sbomSig := pushArtifact(t, repo, archive.SchemeTag(sbom, "sig"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"sbom":1}}`)
	return img, []v1.Hash{sig, sbom, sbomSig}
}

// TestReferrers saves an image from a registry with the artifacts that refer to it, found by
// the referrers API (or its fallback tag index) and by the tag scheme, recursively; lists and
// verifies them; and loads them into an isolated registry and an OCI layout, each manifest
// with its digest and bytes, tag scheme ones under their tags and referrers listed for
// their subject.
func TestReferrers(t *testing.T) {
	for _, kind := range registryKinds {
		t.Run(kind.name, func(t *testing.T) {
			near, far := kind.start(t), kind.start(t)
			img, arts := signed(t, near)
			dir := t.TempDir()
			bundle := filepath.Join(dir, "app.tar")
			mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "-o", bundle, "-q")
			s := summary(t, bundle)
			if s.Artifacts != 3 || len(s.Images) != 1 || len(s.Images[0].Referrers) != 2 {
				t.Fatalf("ls: %d artifacts, image referrers %+v; want 3, two under the image", s.Artifacts, s.Images[0].Referrers)
			}
			for _, r := range s.Images[0].Referrers {
				if r.Digest == arts[1].String() && (len(r.Referrers) != 1 || r.Referrers[0].Digest != arts[2].String()) {
					t.Errorf("the SBOM lists referrers %+v, want its signature %s", r.Referrers, arts[2])
				}
			}
			if out := mustFerry(t, nil, "verify", bundle); !strings.Contains(out, "1 image and 3 artifacts") {
				t.Errorf("verify printed %q", out)
			}
			if out := mustFerry(t, nil, "ls", bundle); strings.Count(out, "↳") != 3 || !strings.Contains(out, "application/spdx+json") {
				t.Errorf("ls printed\n%s", out)
			}

			t.Run("referrers filter", func(t *testing.T) {
				for filter, want := range map[string]int{"none": 0, "sig": 1, "sbom,sig": 3, "application/spdx+json": 1} {
					out := filepath.Join(dir, "filtered.tar")
					mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "--referrers", filter, "-o", out, "-q")
					if got := summary(t, out).Artifacts; got != want {
						t.Errorf("--referrers %s: %d artifacts, want %d", filter, got, want)
					}
				}
				if r := ferry(t, nil, "save", "--from", "registry", near+"/app:1", "--referrers", "signatures", "-o", filepath.Join(dir, "x.tar")); r.code != exitUsage {
					t.Errorf("--referrers signatures: exit %d, want %d", r.code, exitUsage)
				}
			})

			t.Run("load into a registry", func(t *testing.T) {
				mustFerry(t, nil, "load", "-i", bundle, "--to", "registry:"+far+"/mirror", "-q")
				repo, _ := name.NewRepository(far + "/mirror/app")
				sameManifest(t, near+"/app:1", repo.Tag("1"), img.Digest)
				sameManifest(t, near+"/app:"+archive.SchemeTag(img.Digest, "sig"), repo.Tag(archive.SchemeTag(img.Digest, "sig")), arts[0])
				sameManifest(t, near+"/app:"+archive.SchemeTag(arts[1], "sig"), repo.Tag(archive.SchemeTag(arts[1], "sig")), arts[2])
				idx, err := remote.Referrers(repo.Digest(img.Digest.String()))
				if err != nil {
					t.Fatal(err)
				}
				m, _ := idx.IndexManifest()
				if len(m.Manifests) != 1 || m.Manifests[0].Digest != arts[1] {
					t.Fatalf("referrers of the image at the far registry: %+v, want the SBOM %s", m.Manifests, arts[1])
				}
				sameManifest(t, near+"/app@"+arts[1].String(), repo.Digest(arts[1].String()), arts[1])
			})

			t.Run("load into an OCI layout", func(t *testing.T) {
				oci := filepath.Join(dir, "layout")
				mustFerry(t, nil, "load", "-i", bundle, "--to", "oci:"+oci, "-q")
				lp, listed := listed(t, oci)
				for d := range listed {
					if _, err := lp.Blob(d); err != nil {
						t.Errorf("%s: %v", d, err)
					}
				}
				if listed[arts[0]] != archive.SchemeTag(img.Digest, "sig") || listed[arts[2]] != archive.SchemeTag(arts[1], "sig") || listed[arts[1]] != "" {
					t.Fatalf("index.json lists %v", listed)
				}
				// The layout is a source again: a bundle of the same image and artifacts.
				again := filepath.Join(dir, "again.tar")
				mustFerry(t, nil, "save", "oci:"+oci+":"+near+"/app:1", "-o", again, "-q")
				if s := summary(t, again); s.Images[0].Manifest != img.Digest.String() || s.Artifacts != 3 {
					t.Errorf("saved back from the layout: manifest %s and %d artifacts, want %s and 3", s.Images[0].Manifest, s.Artifacts, img.Digest)
				}
				mustFerry(t, nil, "save", "oci:"+oci+":"+near+"/app:1", "--referrers", "sig", "-o", again, "-q")
				if s := summary(t, again); s.Artifacts != 1 {
					t.Errorf("saved back from the layout with --referrers sig: %d artifacts, want the image's signature", s.Artifacts)
				}
			})
		})
	}
}

// sameManifest checks that ref, at the far registry, is the manifest digest, byte for byte
// the one near holds.
func sameManifest(t *testing.T, near string, ref name.Reference, digest v1.Hash) {
	t.Helper()
	want, got := fetch(t, mustRef(t, near)), fetch(t, ref)
	if got.Digest != digest || !bytes.Equal(got.Manifest, want.Manifest) {
		t.Fatalf("%s is %s, want %s as %s holds it", ref, got.Digest, digest, near)
	}
}

// TestReferrersDockerLoad: docker load takes a bundle that carries artifacts, and ferry's load
// into docker says in one line what it left out.
func TestReferrersDockerLoad(t *testing.T) {
	near := testenv.StartReferrersRegistry(t)
	d := testenv.StartDocker(t)
	signed(t, near)
	bundle := filepath.Join(t.TempDir(), "app.tar")
	mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "-o", bundle, "-q")
	d.Run(t, "load", "-i", bundle)
	if got := d.Cat(t, near+"/app:1", "/marker"); got != "signed\n" {
		t.Fatalf("/marker = %q", got)
	}
	d.Run(t, "rmi", near+"/app:1")
	r := ferry(t, dockerEnv(d), "load", "-i", bundle, "--to", "docker")
	if r.code != 0 || !strings.Contains(r.stderr, "left out 3 artifacts") {
		t.Fatalf("ferry load --to docker: exit %d\n%s", r.code, r.stderr)
	}
}

// TestReferrersRefused: a signature whose subject the bundle does not hold is refused by
// verify (exit 3); a registry that lists ten thousand referrers, or referrers in a loop, is
// followed within bounds.
func TestReferrersRefused(t *testing.T) {
	near := testenv.StartReferrersRegistry(t)
	img, arts := signed(t, near)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "app.tar")
	mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "-o", bundle, "-q")

	t.Run("subject missing", func(t *testing.T) {
		// The signature of the SBOM stays, the SBOM goes from index.json.
		bad := filepath.Join(dir, "orphan.tar")
		retar(t, bundle, bad, func(n string) bool { return n == "index.json" }, map[string][]byte{"index.json": withoutEntry(t, bundle, arts[1])}, nil)
		r := ferry(t, nil, "verify", bad)
		if r.code != exitIntegrity || !strings.Contains(r.stderr, arts[1].String()) {
			t.Fatalf("verify: exit %d\n%s", r.code, r.stderr)
		}
	})

	t.Run("loop", func(t *testing.T) {
		// A tag naming the image itself as its own signature, and a signature signed by a
		// signature that names the first: each is taken once.
		repo, _ := name.NewRepository(near + "/app")
		self, _ := remote.Get(repo.Tag("1"))
		if err := remote.Tag(repo.Tag(archive.SchemeTag(arts[0], "sig")), self); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "loop.tar")
		mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "-o", out, "-q")
		if s := summary(t, out); s.Artifacts != 3 || s.Images[0].Manifest != img.Digest.String() {
			t.Fatalf("%d artifacts, manifest %s", s.Artifacts, s.Images[0].Manifest)
		}
	})

	t.Run("chain over eight deep", func(t *testing.T) {
		// Ten signatures, each of the one before, from the image's.
		repo, _ := name.NewRepository(near + "/deep")
		if err := remote.Write(repo.Tag("1"), testenv.BusyboxV1(t)); err != nil {
			t.Fatal(err)
		}
		subject := archiveDigest(t, repo.Tag("1").String())
		for i := range 10 {
			subject = pushArtifact(t, repo, archive.SchemeTag(subject, "sig"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", fmt.Sprintf(`{"critical":{"n":%d}}`, i))
		}
		r := ferry(t, nil, "save", "--from", "registry", repo.Tag("1").String(), "-o", filepath.Join(dir, "deep.tar"))
		if r.code != exitError || !strings.Contains(r.stderr, "over 8 deep") {
			t.Fatalf("save: exit %d\n%s", r.code, r.stderr)
		}
	})

	// Registries that lie: the referrers API lists ten thousand manifests for every subject
	// (of artifact type text/plain), the tag list ten thousand tag scheme tags, or the
	// referrers of an image are the image itself and a manifest that refers to another.
	var other v1.Hash // in the registry that lies, a referrer of the signature
	for _, tc := range []struct {
		name       string
		referrers  func(subject string) []v1.Descriptor
		tags       func(subject string) []string
		want       string // in save's stderr, with exit 1; "" for a save of no artifact
		filterSave string // --referrers that saves (none if the listing is refused anyway)
	}{
		{"ten thousand referrers", func(string) []v1.Descriptor {
			var ds []v1.Descriptor
			for i := range 10000 {
				h, _, _ := v1.SHA256(strings.NewReader(strconv.Itoa(i)))
				ds = append(ds, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: 500, ArtifactType: "text/plain"})
			}
			return ds
		}, nil, "lists 10000 artifacts that refer to it, over 1000", "sig"},
		{"ten thousand tag scheme tags", nil, func(subject string) []string {
			var tags []string
			for i := range 10000 {
				tags = append(tags, strings.Replace(subject, ":", "-", 1)+".sig"+strconv.Itoa(i))
			}
			return tags
		}, "lists 10000 artifacts that refer to it, over 1000", "none"},
		{"the image and a stranger listed as its referrers", func(subject string) []v1.Descriptor {
			return []v1.Descriptor{
				{MediaType: types.OCIManifestSchema1, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(subject, "sha256:")}, Size: 1},
				{MediaType: types.OCIManifestSchema1, Digest: other, Size: 1},
			}
		}, nil, "", "all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, subject, isReferrers := strings.Cut(r.URL.Path, "/referrers/")
				var body any
				switch {
				case isReferrers && tc.referrers != nil:
					body = v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: tc.referrers(subject)}
					w.Header().Set("Content-Type", string(types.OCIImageIndex))
				case strings.HasSuffix(r.URL.Path, "/tags/list") && tc.tags != nil:
					body = map[string]any{"name": "app", "tags": append([]string{"1"}, tc.tags(img.Digest.String())...)}
				}
				if body != nil {
					json.NewEncoder(w).Encode(body)
					return
				}
				reg.ServeHTTP(w, r)
			}))
			defer srv.Close()
			ref := srv.Listener.Addr().String() + "/app:1"
			plain := filepath.Join(t.TempDir(), "plain.tar")
			mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "--referrers", "none", "-o", plain, "-q")
			mustFerry(t, nil, "load", "-i", plain, "--to", "registry:"+srv.Listener.Addr().String(), "-q")
			repo, _ := name.NewRepository(srv.Listener.Addr().String() + "/app")
			other = pushArtifact(t, repo, "", &v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: arts[0], Size: 1}, "text/plain", "other")
			out := filepath.Join(t.TempDir(), "hostile.tar")
			r := ferry(t, nil, "save", "--from", "registry", ref, "-o", out)
			if tc.want == "" {
				if r.code != 0 || summary(t, out).Artifacts != 0 {
					t.Fatalf("save: exit %d, want no artifact taken\n%s", r.code, r.stderr)
				}
				return
			}
			if r.code != exitError || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("save: exit %d\n%s", r.code, r.stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("a refused save left %s: %v", out, err)
			}
			mustFerry(t, nil, "save", "--from", "registry", ref, "--referrers", tc.filterSave, "-o", out, "-q")
		})
	}
}

// withoutEntry returns the bundle's index.json without the entry for digest.
func withoutEntry(t *testing.T, bundle string, digest v1.Hash) []byte {
	t.Helper()
	f, err := os.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("index.json: %v", err)
		}
		if hdr.Name != "index.json" {
			continue
		}
		var idx v1.IndexManifest
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			t.Fatal(err)
		}
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d v1.Descriptor) bool { return d.Digest == digest })
		data, _ := json.Marshal(idx)
		return data
	}
}

// cosign runs the cosign binary in dir, offline: a proxy nobody answers stands for the
// internet (registries on 127.0.0.1 are reached directly), and sigstore's caches and TUF
// root are the test's own. It returns cosign's output, and fails the test unless cosign
// exits as ok says.
func cosign(t *testing.T, dir string, ok bool, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Require(t, "cosign"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, "tuf"), "COSIGN_PASSWORD=ferry-test",
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if (err == nil) != ok {
		t.Fatalf("cosign %s: %v, want success %v\n%s", strings.Join(args, " "), err, ok, out)
	}
	return string(out)
}

// TestCosign signs and attests an image with cosign on a near registry, carries it across as
// a bundle file, loads it into an isolated far registry, and has cosign verify the signature
// and the attestation there, offline; a bundle saved with --referrers none verifies there
// not at all. cosign signs by the tag scheme (cosign 2's default), as an OCI 1.1 referrer
// (--registry-referrers-mode=oci-1-1, where the registry serves the API), or as a Sigstore
// bundle by the referrers API or its fallback tag index (--new-bundle-format, cosign 3's
// default), verified against a trusted root that holds no authority but the key (the
// transparency log is not asked).
func TestCosign(t *testing.T) {
	for _, tc := range []struct {
		name                string
		registry            registryKind
		sign, attest, check []string // flags of sign, attest, and verify and verify-attestation
		env                 []string
	}{
		{"tag scheme", registryKinds[1], nil, nil, nil, nil},
		{"OCI 1.1 referrers", registryKinds[0], []string{"--registry-referrers-mode=oci-1-1"}, nil, []string{"--experimental-oci11"}, []string{"COSIGN_EXPERIMENTAL=1"}},
		{"Sigstore bundles, referrers API", registryKinds[0], []string{"--new-bundle-format"}, []string{"--new-bundle-format"}, []string{"--new-bundle-format", "--trusted-root", "trusted_root.json"}, nil},
		{"Sigstore bundles, fallback tag index", registryKinds[1], []string{"--new-bundle-format"}, []string{"--new-bundle-format"}, []string{"--new-bundle-format", "--trusted-root", "trusted_root.json"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near, far := tc.registry.start(t), tc.registry.start(t)
			dir := t.TempDir()
			cosign(t, dir, true, nil, "generate-key-pair")
			os.WriteFile(filepath.Join(dir, "trusted_root.json"), []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), 0o644)
			os.WriteFile(filepath.Join(dir, "predicate.json"), []byte(`{"buildType":"https://ferrytool.github.io/test@v1","builder":{"id":"ferry-test"}}`), 0o644)
			img, _ := signed(t, near) // and artifacts of ferry's test making, alongside cosign's
			image := near + "/app@" + img.Digest.String()
			cosign(t, dir, true, tc.env, slices.Concat([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "--yes"}, tc.sign, []string{image})...)
			cosign(t, dir, true, tc.env, slices.Concat([]string{"attest", "--key", "cosign.key", "--tlog-upload=false", "--yes", "--type", "slsaprovenance", "--predicate", "predicate.json"}, tc.attest, []string{image})...)

			for _, carried := range []bool{true, false} {
				bundle := filepath.Join(dir, "app.tar")
				referrers := map[bool]string{true: "all", false: "none"}[carried]
				mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "--referrers", referrers, "-o", bundle, "-q")
				mustFerry(t, nil, "verify", bundle)
				mustFerry(t, nil, "load", "-i", bundle, "--to", "registry:"+far+"/"+referrers, "-q")
				signedFar := far + "/" + referrers + "/app@" + img.Digest.String()
				cosign(t, dir, carried, tc.env, slices.Concat([]string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true"}, tc.check, []string{signedFar})...)
				cosign(t, dir, carried, tc.env, slices.Concat([]string{"verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--type", "slsaprovenance"}, tc.check, []string{signedFar})...)
			}
		})
	}
}

// TestReferrersPool: a pool keeps a bundle's artifacts, exports the bundle byte for byte, and
// knows them in its inventory; a delta against it carries them only where the pool lacks them.
func TestReferrersPool(t *testing.T) {
	near := testenv.StartReferrersRegistry(t)
	_, arts := signed(t, near)
	dir := t.TempDir()
	bundle, pool := filepath.Join(dir, "app.tar"), filepath.Join(dir, "pool")
	mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "-o", bundle, "-q")
	mustFerry(t, nil, "pool", "init", pool)
	mustFerry(t, nil, "pool", "add", pool, bundle, "--name", "signed", "-q")
	mustFerry(t, nil, "pool", "check", pool, "--read-data")
	exported := filepath.Join(dir, "exported.tar")
	mustFerry(t, nil, "pool", "export", pool, "signed", "-o", exported, "-q")
	sameFile(t, exported, bundle)
	if s := summary(t, exported); s.Artifacts != 3 {
		t.Fatalf("exported bundle has %d artifacts, want 3", s.Artifacts)
	}
	one := filepath.Join(dir, "one.tar") // one image of the pool, with what refers to it
	mustFerry(t, nil, "save", "pool:"+pool+":"+near+"/app:1", "-o", one, "-q")
	if s := summary(t, one); s.Artifacts != 3 || len(s.Images) != 1 {
		t.Fatalf("one image of the pool: %d images and %d artifacts, want 1 and 3", len(s.Images), s.Artifacts)
	}

	// Far sides that hold the signed image, and then a new signature of it: a delta against
	// what each holds carries the artifact manifests and only the new signature's blobs.
	far := testenv.StartRegistry(t).Addr
	layout := filepath.Join(dir, "layout")
	mustFerry(t, nil, "load", "-i", bundle, "--to", "registry:"+far+"/mirror", "-q")
	mustFerry(t, nil, "load", "-i", bundle, "--to", "oci:"+layout, "-q")
	repo, _ := name.NewRepository(near + "/app")
	img, _ := remote.Get(repo.Tag("1"))
	sig := pushArtifact(t, repo, archive.SchemeTag(img.Digest, "sig2"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"new":1}}`)
	for _, to := range []string{"registry:" + far + "/mirror", "oci:" + layout, "pool:" + pool} {
		t.Run(to, func(t *testing.T) {
			have, delta := filepath.Join(dir, "have.json"), filepath.Join(dir, "delta.tar")
			mustFerry(t, nil, "inventory", "--from", to, "-o", have)
			mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "--have", have, "-o", delta, "-q")
			if got, whole := fileSize(t, delta), fileSize(t, bundle); got > whole/2 {
				t.Errorf("the delta is %d bytes, the whole bundle %d", got, whole)
			}
			s := summary(t, delta)
			if s.Artifacts != 4 {
				t.Fatalf("the delta has %d artifacts, want 4", s.Artifacts)
			}
			left := map[string]bool{}
			for _, name := range untarNames(t, delta) {
				left[name] = true
			}
			for _, h := range append(arts, sig) {
				if !left["blobs/sha256/"+h.Hex] {
					t.Errorf("the delta lacks the manifest of artifact %s", h)
				}
			}
			held, _, _ := v1.SHA256(strings.NewReader(`{"critical":{"image":1}}`))
			added, _, _ := v1.SHA256(strings.NewReader(`{"critical":{"new":1}}`))
			if left["blobs/sha256/"+held.Hex] || !left["blobs/sha256/"+added.Hex] {
				t.Errorf("the delta carries the held signature's payload: %v, the new one's: %v", left["blobs/sha256/"+held.Hex], left["blobs/sha256/"+added.Hex])
			}
			if strings.HasPrefix(to, "pool:") {
				mustFerry(t, nil, "pool", "add", pool, delta, "--name", "delta", "-q")
				return
			}
			mustFerry(t, nil, "load", "-i", delta, "--to", to, "-q")
		})
	}
	repoFar, _ := name.NewRepository(far + "/mirror/app")
	sameManifest(t, near+"/app:"+archive.SchemeTag(img.Digest, "sig2"), repoFar.Tag(archive.SchemeTag(img.Digest, "sig2")), sig)

	// A content delta carries the artifacts too: a third signature reaches the layout.
	sig3 := pushArtifact(t, repo, archive.SchemeTag(img.Digest, "sig3"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"third":1}}`)
	have, delta := filepath.Join(dir, "content.json"), filepath.Join(dir, "content.tar")
	mustFerry(t, nil, "inventory", "--content", "--from", "oci:"+layout, "-o", have)
	mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "--have", have, "--delta", "content", "-o", delta, "-q")
	mustFerry(t, nil, "load", "-i", delta, "--to", "oci:"+layout, "-q")
	lp, err := ociLayout.FromPath(layout)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := lp.ImageIndex()
	m, _ := idx.IndexManifest()
	if !slices.ContainsFunc(m.Manifests, func(d v1.Descriptor) bool {
		return d.Digest == sig3 && d.Annotations["org.opencontainers.image.ref.name"] == archive.SchemeTag(img.Digest, "sig3")
	}) {
		t.Fatalf("the layout does not list the signature the content delta carried: %+v", m.Manifests)
	}
	if _, err := lp.Blob(sig3); err != nil {
		t.Fatal(err)
	}
}

// untarNames lists the entries of a plain bundle.
func untarNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
}

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// Helm's media types for a chart in a registry (helm.sh/helm/v4/pkg/registry).
const (
	helmConfig = "application/vnd.cncf.helm.config.v1+json"
	helmChart  = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// pushChart pushes a Helm chart to ref as helm push does: its Chart.yaml as the config, the
// chart's .tgz as the one layer. It returns the manifest's digest and the .tgz.
func pushChart(t *testing.T, ref string) (v1.Hash, []byte) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	for _, f := range []struct{ name, body string }{
		{"ferry-demo/Chart.yaml", "apiVersion: v2\nname: ferry-demo\nversion: 0.1.0\n"},
		{"ferry-demo/values.yaml", "greeting: hello\n"},
		{"ferry-demo/templates/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting }}\n"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	zw.Close()
	config := static.NewLayer([]byte(`{"name":"ferry-demo","version":"0.1.0","apiVersion":"v2"}`), helmConfig)
	chart := static.NewLayer(tgz.Bytes(), helmChart)
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Annotations: map[string]string{"org.opencontainers.image.title": "ferry-demo", "org.opencontainers.image.version": "0.1.0"}}
	for i, l := range []v1.Layer{config, chart} {
		if err := remote.WriteLayer(tag.Context(), l); err != nil {
			t.Fatal(err)
		}
		d, _ := partial.Descriptor(l)
		d.Annotations = nil
		if i == 0 {
			m.Config = *d
		} else {
			d.Annotations = map[string]string{"org.opencontainers.image.title": "ferry-demo-0.1.0.tgz"}
			m.Layers = []v1.Descriptor{*d}
		}
	}
	raw, _ := json.Marshal(m)
	if err := remote.Put(tag, rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
	digest, _, _ := v1.SHA256(bytes.NewReader(raw))
	return digest, tgz.Bytes()
}

// sameChart checks that ref is the chart digest, its .tgz the bytes pushed.
func sameChart(t *testing.T, ref string, digest v1.Hash, tgz []byte) {
	t.Helper()
	r := mustRef(t, ref)
	got := fetch(t, r)
	if got.Digest != digest {
		t.Fatalf("%s is %s, want %s", ref, got.Digest, digest)
	}
	m, err := v1.ParseManifest(bytes.NewReader(got.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	l, err := remote.Layer(r.Context().Digest(m.Layers[0].Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if data, _ := io.ReadAll(rc); !bytes.Equal(data, tgz) {
		t.Fatalf("%s: the chart's .tgz is not the one pushed", ref)
	}
}

// TestHelmChart saves a Helm chart and its signature from a registry, lists and verifies
// them, loads them into an isolated registry, an OCI layout and a pool, the chart's digest
// and bytes unchanged, and has a docker-bound load refuse it.
func TestHelmChart(t *testing.T) {
	for _, kind := range registryKinds {
		t.Run(kind.name, func(t *testing.T) {
			near, far := kind.start(t), kind.start(t)
			digest, tgz := pushChart(t, near+"/charts/ferry-demo:0.1.0")
			repo, _ := name.NewRepository(near + "/charts/ferry-demo")
			sig := pushArtifact(t, repo, archive.SchemeTag(digest, "sig"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"chart":1}}`)
			dir := t.TempDir()
			bundle := filepath.Join(dir, "chart.tar")
			if out := ferry(t, nil, "save", "--from", "registry", near+"/charts/ferry-demo:0.1.0", "-o", bundle); out.code != 0 || !strings.Contains(out.stderr, "saved 2 artifacts") {
				t.Fatalf("save: exit %d\n%s", out.code, out.stderr)
			}
			s := summary(t, bundle)
			if len(s.Images) != 0 || len(s.Unattached) != 1 || s.Unattached[0].Digest != digest.String() || s.Unattached[0].Type != helmConfig ||
				len(s.Unattached[0].Referrers) != 1 || s.Unattached[0].Referrers[0].Digest != sig.String() {
				t.Fatalf("ls: %+v", s)
			}
			if out := mustFerry(t, nil, "ls", bundle); !strings.Contains(out, near+"/charts/ferry-demo:0.1.0") {
				t.Errorf("ls does not name the chart:\n%s", out)
			}
			if out := mustFerry(t, nil, "verify", bundle); !strings.Contains(out, "OK: 2 artifacts") {
				t.Errorf("verify printed %q", out)
			}

			mustFerry(t, nil, "load", "-i", bundle, "--to", "registry:"+far+"/mirror", "-q")
			sameChart(t, far+"/mirror/charts/ferry-demo:0.1.0", digest, tgz)
			sameManifest(t, near+"/charts/ferry-demo:"+archive.SchemeTag(digest, "sig"), mustRef(t, far+"/mirror/charts/ferry-demo:"+archive.SchemeTag(digest, "sig")), sig)

			oci := filepath.Join(dir, "layout")
			mustFerry(t, nil, "load", "-i", bundle, "--to", "oci:"+oci, "-q")
			lp, err := layout.FromPath(oci)
			if err != nil {
				t.Fatal(err)
			}
			idx, _ := lp.ImageIndex()
			m, _ := idx.IndexManifest()
			named := map[string]v1.Hash{}
			for _, d := range m.Manifests {
				named[d.Annotations["org.opencontainers.image.ref.name"]] = d.Digest
			}
			if named[near+"/charts/ferry-demo:0.1.0"] != digest || named[archive.SchemeTag(digest, "sig")] != sig {
				t.Fatalf("index.json names %v", named)
			}
			if _, err := lp.Blob(digest); err != nil {
				t.Fatal(err)
			}
			again := filepath.Join(dir, "again.tar") // the layout is a source of the chart again
			mustFerry(t, nil, "save", "oci:"+oci+":"+near+"/charts/ferry-demo:0.1.0", "-o", again, "-q")
			sameFile(t, again, bundle)

			pool := filepath.Join(dir, "pool")
			mustFerry(t, nil, "pool", "init", pool)
			mustFerry(t, nil, "load", "-i", bundle, "--to", "pool:"+pool+":charts", "-q")
			exported := filepath.Join(dir, "exported.tar")
			mustFerry(t, nil, "pool", "export", pool, "charts", "-o", exported, "-q")
			sameFile(t, exported, bundle)
		})
	}
}

// TestArtifactsDockerBound: docker takes the images of a bundle and says in one line what it
// leaves out (artifacts, other platforms); a bundle of artifacts alone it refuses (exit 2),
// holding no more than before.
func TestArtifactsDockerBound(t *testing.T) {
	near := testenv.StartReferrersRegistry(t)
	d := testenv.StartDocker(t)
	dir := t.TempDir()
	pushChart(t, near+"/charts/ferry-demo:0.1.0")
	chart := filepath.Join(dir, "chart.tar")
	mustFerry(t, nil, "save", "--from", "registry", near+"/charts/ferry-demo:0.1.0", "-o", chart, "-q")
	r := ferry(t, dockerEnv(d), "load", "-i", chart, "--to", "docker")
	if r.code != exitUsage || !strings.Contains(r.stderr, "holds images only") || !strings.Contains(r.stderr, helmConfig) || !strings.Contains(r.stderr, "registry or oci:DIR") {
		t.Fatalf("load of a chart into docker: exit %d\n%s", r.code, r.stderr)
	}
	if images := d.Run(t, "images", "-q"); strings.TrimSpace(images) != "" {
		t.Fatalf("docker holds %q after a refused load", images)
	}

	pushPlatforms(t, near+"/multi:1")
	all := filepath.Join(dir, "all.tar")
	mustFerry(t, nil, "save", "--from", "registry", near+"/multi:1", "--all-platforms", "-o", all, "-q")
	r = ferry(t, dockerEnv(d), "load", "-i", all, "--to", "docker")
	if r.code != 0 || !strings.Contains(r.stderr, "left out 1 artifact (1 signature) and the platforms linux/"+otherArch()+" of "+near+"/multi:1") {
		t.Fatalf("load of two platforms into docker: exit %d\n%s", r.code, r.stderr)
	}
	if got := d.Cat(t, near+"/multi:1", "/marker"); got != "host\n" {
		t.Fatalf("/marker = %q, want the host's platform", got)
	}
}

// otherArch is the architecture of pushPlatforms' image that is not the host's.
func otherArch() string {
	if archive.HostPlatform().Architecture == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// pushPlatforms pushes to ref an index of two runnable busybox images, for this machine's
// platform (/marker "host") and another (/marker "other"), and a signature of the index by
// the tag scheme. It returns the index's digest.
func pushPlatforms(t *testing.T, ref string) v1.Hash {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	var adds []mutate.IndexAddendum
	for _, p := range []struct{ arch, marker string }{{archive.HostPlatform().Architecture, "host\n"}, {otherArch(), "other\n"}} {
		img := testenv.BusyboxV1(t, map[string]string{"marker": p.marker})
		cfg, _ := img.ConfigFile()
		cfg = cfg.DeepCopy()
		cfg.Architecture = p.arch
		if img, err = mutate.ConfigFile(img, cfg); err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: p.arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	digest, _ := idx.Digest()
	pushArtifact(t, tag.Context(), archive.SchemeTag(digest, "sig"), nil, "application/vnd.dev.cosign.simplesigning.v1+json", `{"critical":{"index":1}}`)
	return digest
}

// TestAllPlatforms: a multi-platform image saved with --all-platforms keeps its index digest,
// every platform and the signature of the index into a registry, an OCI layout and a pool,
// and out of the layout again.
func TestAllPlatforms(t *testing.T) {
	for _, kind := range registryKinds {
		t.Run(kind.name, func(t *testing.T) {
			near, far := kind.start(t), kind.start(t)
			digest := pushPlatforms(t, near+"/multi:1")
			dir := t.TempDir()
			bundle := filepath.Join(dir, "all.tar")
			mustFerry(t, nil, "save", "--from", "registry", near+"/multi:1", "--all-platforms", "-o", bundle, "-q")
			if out := mustFerry(t, nil, "ls", bundle); !strings.Contains(out, near+"/multi:1: linux/"+otherArch()+" too") {
				t.Errorf("ls does not name the other platform:\n%s", out)
			}
			leftOut := func(src ...string) {
				t.Helper()
				r := ferry(t, nil, append([]string{"save", "-o", filepath.Join(dir, "one.tar")}, src...)...)
				if r.code != 0 || !strings.Contains(r.stderr, "left out linux/"+otherArch()) {
					t.Errorf("save %s of one platform: exit %d, does not say which it left out:\n%s%s", src, r.code, r.stdout, r.stderr)
				}
			}
			leftOut("--from", "registry", near+"/multi:1")

			mustFerry(t, nil, "load", "-i", bundle, "--to", "registry:"+far+"/mirror", "-q")
			sameManifest(t, near+"/multi:1", mustRef(t, far+"/mirror/multi:1"), digest)
			idx, err := remote.Index(mustRef(t, far+"/mirror/multi:1"))
			if err != nil {
				t.Fatal(err)
			}
			m, _ := idx.IndexManifest()
			for _, d := range m.Manifests {
				img, err := idx.Image(d.Digest)
				if err == nil {
					_, err = img.ConfigFile()
				}
				if err != nil {
					t.Fatalf("%s of the index at the far registry: %v", d.Platform, err)
				}
			}
			sameManifest(t, near+"/multi:"+archive.SchemeTag(digest, "sig"), mustRef(t, far+"/mirror/multi:"+archive.SchemeTag(digest, "sig")), archiveDigest(t, near+"/multi:"+archive.SchemeTag(digest, "sig")))

			oci := filepath.Join(dir, "layout")
			mustFerry(t, nil, "load", "-i", bundle, "--to", "oci:"+oci, "-q")
			again := filepath.Join(dir, "again.tar")
			mustFerry(t, nil, "save", "oci:"+oci+":"+near+"/multi:1", "--all-platforms", "-o", again, "-q")
			leftOut("oci:" + oci + ":" + near + "/multi:1")
			raw := run(t, "skopeo", "inspect", "--raw", "oci-archive:"+again+":1")
			if got, _, _ := v1.SHA256(strings.NewReader(raw)); got != digest {
				t.Fatalf("saved back from the layout: index %s, want %s", got, digest)
			}

			pool := filepath.Join(dir, "pool")
			mustFerry(t, nil, "pool", "init", pool)
			mustFerry(t, nil, "load", "-i", bundle, "--to", "pool:"+pool+":multi", "-q")
			exported := filepath.Join(dir, "exported.tar")
			mustFerry(t, nil, "pool", "export", pool, "multi", "-o", exported, "-q")
			sameFile(t, exported, bundle)
		})
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fetch gets what ref names from its registry.
func fetch(t *testing.T, ref name.Reference) *remote.Descriptor {
	t.Helper()
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	return desc
}

// archiveDigest is the digest of the manifest ref names.
func archiveDigest(t *testing.T, ref string) v1.Hash {
	t.Helper()
	return fetch(t, mustRef(t, ref)).Digest
}

// TestSendArtifacts: send keeps a bundle's artifacts, and those a registry source finds,
// in an OCI layout on a host over SFTP; a host's docker takes the images and says what it
// left out, and refuses a bundle of artifacts alone, failing that host.
func TestSendArtifacts(t *testing.T) {
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	near := testenv.StartReferrersRegistry(t)
	img, arts := signed(t, near)
	h := startSSHHost(t, pub)
	known := filepath.Join(home, "known_hosts")
	os.WriteFile(known, []byte(h.sshd.KnownHostsLine()+"\n"), 0o600)
	send := func(args ...string) result {
		return ferry(t, []string{"HOME=" + home, "SSH_AUTH_SOCK="}, append([]string{"send", "--known-hosts", known, "-i", key}, args...)...)
	}
	dir := t.TempDir()
	bundle, chart := filepath.Join(dir, "app.tar"), filepath.Join(dir, "chart.tar")
	mustFerry(t, nil, "save", "--from", "registry", near+"/app:1", "-o", bundle, "-q")
	pushChart(t, near+"/charts/ferry-demo:0.1.0")
	mustFerry(t, nil, "save", "--from", "registry", near+"/charts/ferry-demo:0.1.0", "-o", chart, "-q")

	for _, from := range [][]string{{bundle}, {"--from", "registry", near + "/app:1"}} {
		oci := filepath.Join(t.TempDir(), "images")
		if r := send(append(from, "-H", "root@"+h.sshd.Addr, "--to", "oci:"+oci)...); r.code != 0 {
			t.Fatalf("send %v: exit %d\n%s", from, r.code, r.stderr)
		}
		_, got := listed(t, oci)
		if _, ok := got[img.Digest]; !ok || got[arts[0]] != archive.SchemeTag(img.Digest, "sig") || got[arts[2]] != archive.SchemeTag(arts[1], "sig") {
			t.Fatalf("send %v: index.json lists %v", from, got)
		}
		if _, ok := got[arts[1]]; !ok {
			t.Fatalf("send %v: index.json lacks the SBOM %s: %v", from, arts[1], got)
		}
	}

	r := send(bundle, "-H", h.dest)
	if r.code != 0 || !strings.Contains(r.stderr, "left out 3 artifacts (") || !strings.Contains(r.stderr, "2 signatures") || !strings.Contains(r.stderr, "holds images only") {
		t.Fatalf("send to docker: exit %d\n%s", r.code, r.stderr)
	}
	r = send(chart, "-H", h.dest)
	if r.code != exitUsage || !strings.Contains(r.stderr, "holds images only") {
		t.Fatalf("send of a chart to docker: exit %d\n%s", r.code, r.stderr)
	}
}

// listed reads a layout's index.json: the ref name of each manifest it lists, by digest.
func listed(t *testing.T, oci string) (layout.Path, map[v1.Hash]string) {
	t.Helper()
	lp, err := layout.FromPath(oci)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := lp.ImageIndex()
	m, _ := idx.IndexManifest()
	out := map[v1.Hash]string{}
	for _, d := range m.Manifests {
		out[d.Digest] = d.Annotations["org.opencontainers.image.ref.name"]
	}
	return lp, out
}

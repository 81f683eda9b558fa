package archive

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// An Artifact is a manifest of the bundle's OCI part that is not an image docker loads: a
// signature, an attestation or an SBOM that refers to a manifest of the bundle (its subject),
// or an artifact of its own such as a Helm chart. docker load never sees it: manifest.json
// does not list it.
type Artifact struct {
	Manifest  *Blob
	MediaType types.MediaType
	// Type is its artifactType, else its config's media type, else, where that is an image
	// config's (a cosign signature by the tag scheme), its first layer's.
	Type string
	// Subject is the digest of the manifest it refers to: its subject, the digest its tag
	// scheme tag names, or the one buildkit's annotation names; zero for none.
	Subject v1.Hash
	// Tags are the tag scheme tags it goes by, "sha256-<hex>.sig" and the like, in its
	// subject's repositories; none for a referrer found by its subject.
	Tags []string
	// RepoTags name an artifact of its own (a Helm chart) as images are named,
	// "example.com/charts/app:1.0.0".
	RepoTags []string
	// Blobs are its config and layers.
	Blobs []*Blob
}

// Annotations and patterns that say what an index entry refers to.
const (
	annotationRefDigest = "vnd.docker.reference.digest" // buildkit's attestation manifests
	// MaxReferrerDepth caps how long a chain of artifacts referring to artifacts is (a
	// signature of an attestation of an image is two).
	MaxReferrerDepth = 8
)

// tagScheme matches the tags cosign gives what refers to a manifest: sha256-<hex>.sig,
// .att, .sbom; and the referrers API's fallback tag, sha256-<hex>.
var tagScheme = regexp.MustCompile(`^sha256-([0-9a-f]{64})(\.[A-Za-z0-9_-]{1,32})?$`)

// SchemeSubject returns the digest a tag scheme tag names, and whether tag is one.
func SchemeSubject(tag string) (v1.Hash, bool) {
	m := tagScheme.FindStringSubmatch(tag)
	if m == nil {
		return v1.Hash{}, false
	}
	return v1.Hash{Algorithm: "sha256", Hex: m[1]}, true
}

// SchemeTag returns the tag scheme tag of subject with suffix ("sig", "att", "sbom").
func SchemeTag(subject v1.Hash, suffix string) string {
	return subject.Algorithm + "-" + subject.Hex + "." + suffix
}

// ArtifactTag returns the tag scheme tag an index entry's ref name gives, or "".
func ArtifactTag(ann map[string]string) string {
	if t := ann[annotationRefName]; tagScheme.MatchString(t) {
		return t
	}
	return ""
}

// IsArtifact reports whether the manifest an index entry names is an artifact rather than an
// image: it has a subject or an artifact type, a tag scheme tag, a config that is not an
// image's, or a layer that is not a layer docker unpacks.
func IsArtifact(desc v1.Descriptor, m *v1.Manifest) bool {
	return m.Subject != nil || m.ArtifactType != "" ||
		ArtifactTag(desc.Annotations) != "" || !m.Config.MediaType.IsConfig() ||
		slices.ContainsFunc(m.Layers, func(l v1.Descriptor) bool { return !l.MediaType.IsLayer() })
}

// newArtifact describes the artifact desc names, whose manifest is m (in mblob); its config
// and layers are blob(d) for each of their descriptors.
func newArtifact(desc v1.Descriptor, m *v1.Manifest, mblob *Blob, blob func(v1.Descriptor) (*Blob, error)) (*Artifact, error) {
	a := &Artifact{Manifest: mblob, MediaType: desc.MediaType, Type: TypeOf(m)}
	switch tag := ArtifactTag(desc.Annotations); {
	case m.Subject != nil:
		a.Subject = m.Subject.Digest
	case tag != "":
		a.Subject, _ = SchemeSubject(tag)
	case desc.Annotations[annotationRefDigest] != "":
		h, err := v1.NewHash(desc.Annotations[annotationRefDigest])
		if err != nil {
			return nil, fmt.Errorf("%w: artifact %s: %s: %w", ErrInvalidMetadata, desc.Digest, annotationRefDigest, err)
		}
		a.Subject = h
	}
	if tag := ArtifactTag(desc.Annotations); tag != "" {
		a.Tags = []string{tag}
	}
	if tag := RefTag(desc.Annotations); tag != "" {
		a.RepoTags = []string{tag}
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		b, err := blob(d)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", desc.Digest, err)
		}
		if !slices.Contains(a.Blobs, b) {
			a.Blobs = append(a.Blobs, b)
		}
	}
	return a, nil
}

// TypeOf is an artifact's type: its artifactType, else its config's media type, else,
// where that is an image config's, its first layer's.
func TypeOf(m *v1.Manifest) string {
	switch {
	case m.ArtifactType != "":
		return m.ArtifactType
	case !m.Config.MediaType.IsConfig() && m.Config.MediaType != "":
		return string(m.Config.MediaType)
	case len(m.Layers) > 0:
		return string(m.Layers[0].MediaType)
	}
	return string(m.Config.MediaType)
}

// Descriptors returns the artifact's index.json entries: one per tag scheme tag, with the tag
// as its ref name, one per repository tag, named as images are, or one untagged.
func (a *Artifact) Descriptors() []v1.Descriptor {
	if len(a.Tags) == 0 && len(a.RepoTags) == 0 {
		return []v1.Descriptor{a.Descriptor()}
	}
	return a.entries(a.Tags, a.RepoTags)
}

// Descriptor describes the artifact's manifest.
func (a *Artifact) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: a.MediaType, Digest: a.Manifest.Digest, Size: a.Manifest.Size, ArtifactType: a.Type}
}

// entries returns the index.json entries of the artifact under tag scheme tags and
// repository tags.
func (a *Artifact) entries(tags, repoTags []string) []v1.Descriptor {
	var out []v1.Descriptor
	for _, tag := range tags {
		d := a.Descriptor()
		d.Annotations = map[string]string{annotationRefName: tag}
		out = append(out, d)
	}
	if len(repoTags) > 0 {
		out = append(out, tagged(a.Descriptor(), repoTags)...)
	}
	return out
}

// tagArtifact adds the tags of another index entry of an artifact to it.
func (b *Bundle) tagArtifact(desc v1.Descriptor) {
	a := b.artifactOf[desc.Digest]
	if tag := ArtifactTag(desc.Annotations); tag != "" && !slices.Contains(a.Tags, tag) {
		a.Tags = append(a.Tags, tag)
	}
	if tag := RefTag(desc.Annotations); tag != "" && !slices.Contains(a.RepoTags, tag) {
		a.RepoTags = append(a.RepoTags, tag)
	}
}

// addArtifact adds a to the bundle's artifacts.
func (b *Bundle) addArtifact(a *Artifact) {
	if b.artifactOf == nil {
		b.artifactOf, b.referring = map[v1.Hash]*Artifact{}, map[v1.Hash][]*Artifact{}
	}
	b.Artifacts = append(b.Artifacts, a)
	b.artifactOf[a.Manifest.Digest] = a
	b.referring[a.Subject] = append(b.referring[a.Subject], a)
}

// Referring returns the artifacts whose subject is h, in the bundle's order; the zero h
// gives those that refer to nothing.
func (b *Bundle) Referring(h v1.Hash) []*Artifact { return b.referring[h] }

// AddArtifact adds the artifact manifest raw, of media type mt, to the OCI part of the
// bundle, under tags: tag scheme tags ("sha256-<hex>.sig") and repository tags
// ("example.com/charts/app:1.0.0", for an artifact of its own); none for a referrer found
// by its subject. Its config and layers are listed, their content for the caller's source to
// serve. It returns the artifact the bundle holds, one already added if any.
func (b *Bundle) AddArtifact(raw []byte, mt types.MediaType, tags []string) (*Artifact, error) {
	var scheme, repo []string
	for _, t := range tags {
		if ArtifactTag(map[string]string{annotationRefName: t}) != "" {
			scheme = append(scheme, t)
			continue
		}
		if _, err := ParseTag(t); err != nil {
			return nil, fmt.Errorf("%w: artifact tag %s: %w", ErrInvalidMetadata, Quote(t), err)
		}
		repo = append(repo, t)
	}
	mblob := &Blob{Digest: sha256Hash(raw), Size: int64(len(raw)), Data: raw}
	if a := b.artifactOf[mblob.Digest]; a != nil {
		scheme = slices.DeleteFunc(scheme, func(t string) bool { return slices.Contains(a.Tags, t) })
		repo = slices.DeleteFunc(repo, func(t string) bool { return slices.Contains(a.RepoTags, t) })
		a.Tags, a.RepoTags = append(a.Tags, scheme...), append(a.RepoTags, repo...)
		b.addIndexEntries(a.entries(scheme, repo))
		return a, nil
	}
	var m v1.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: artifact %s: %w", ErrInvalidMetadata, mblob.Digest, err)
	}
	desc := v1.Descriptor{MediaType: mt, Digest: mblob.Digest, Size: mblob.Size}
	if len(scheme) > 0 { // the subject its tag names
		desc.Annotations = map[string]string{annotationRefName: scheme[0]}
	}
	a, err := newArtifact(desc, &m, b.AddBlob(mblob), func(d v1.Descriptor) (*Blob, error) {
		return b.AddBlob(&Blob{Digest: d.Digest, Size: d.Size}), nil
	})
	if err != nil {
		return nil, err
	}
	a.Tags, a.RepoTags = scheme, repo
	b.addArtifact(a)
	b.addIndexEntries(a.Descriptors())
	return a, nil
}

func (b *Bundle) addIndexEntries(descs []v1.Descriptor) {
	if b.Index.SchemaVersion == 0 {
		b.Index = v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	}
	b.Index.Manifests = append(b.Index.Manifests, descs...)
}

// checkSubjects refuses artifacts whose subject the bundle does not hold, and chains of
// artifacts that loop or run over MaxReferrerDepth.
func (b *Bundle) checkSubjects(manifests map[v1.Hash]bool) error {
	for _, a := range b.Artifacts {
		at := a
		for depth := 0; at.Subject != (v1.Hash{}); depth++ {
			if depth >= MaxReferrerDepth {
				return fmt.Errorf("%w: artifact %s: artifacts refer to artifacts over %d deep, or in a loop", ErrInvalidMetadata, a.Manifest.Digest, MaxReferrerDepth)
			}
			if manifests[at.Subject] {
				break
			}
			next := b.artifactOf[at.Subject]
			if next == nil {
				return fmt.Errorf("%w: %s %s refers to %s, which the bundle does not hold", ErrMissingBlob, a.Describe(), a.Manifest.Digest, at.Subject)
			}
			at = next
		}
	}
	return nil
}

// Describe names what kind of artifact a is, for people: "signature", "attestation", "SBOM",
// else its type.
func (a *Artifact) Describe() string {
	for _, t := range a.Tags {
		switch {
		case strings.HasSuffix(t, ".sig"):
			return "signature"
		case strings.HasSuffix(t, ".att"):
			return "attestation"
		case strings.HasSuffix(t, ".sbom"):
			return "SBOM"
		}
	}
	switch kind := Kind(a.Type); kind {
	case "sig":
		return "signature"
	case "att":
		return "attestation"
	case "sbom":
		return "SBOM"
	}
	return "artifact (" + a.Type + ")"
}

// Kind returns the short name of an artifact type: "sig", "att" or "sbom" for the types
// cosign and Notation give signatures, attestations and SBOMs, else "".
func Kind(artifactType string) string {
	t := strings.ToLower(artifactType)
	switch {
	case strings.Contains(t, "cosign.artifact.sig"), strings.Contains(t, "simplesigning"), strings.Contains(t, "notary.signature"):
		return "sig"
	case strings.Contains(t, "dsse"), strings.Contains(t, "in-toto"), strings.Contains(t, "cosign.artifact.att"):
		return "att"
	case strings.Contains(t, "spdx"), strings.Contains(t, "cyclonedx"), strings.Contains(t, "sbom"):
		return "sbom"
	}
	return ""
}

// Referrers says which artifacts that refer to an image a source takes along with it: the zero
// value takes none.
type Referrers struct {
	all   bool
	types []string
}

// AllReferrers takes every artifact.
var AllReferrers = Referrers{all: true}

// ParseReferrers parses what --referrers takes: "none", "all", or a comma-separated list of
// short names (sig, att, sbom) and artifact types.
func ParseReferrers(s string) (Referrers, error) {
	switch s {
	case "none":
		return Referrers{}, nil
	case "all":
		return AllReferrers, nil
	}
	var r Referrers
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" || t == "none" || t == "all" || (!strings.Contains(t, "/") && !slices.Contains([]string{"sig", "att", "sbom"}, t)) {
			return Referrers{}, fmt.Errorf("referrers %q: want none, all, or a list of sig, att, sbom and artifact types (type/subtype)", s)
		}
		r.types = append(r.types, t)
	}
	return r, nil
}

// Any reports whether r takes any artifact.
func (r Referrers) Any() bool { return r.all || len(r.types) > 0 }

// Takes reports whether r takes an artifact of type typ, found under tag (its tag scheme
// tag, "" for a referrer found by subject).
func (r Referrers) Takes(typ, tag string) bool {
	if r.all {
		return true
	}
	_, suffix, _ := strings.Cut(tag, ".")
	for _, t := range r.types {
		if t == typ || t == Kind(typ) || t == suffix {
			return true
		}
	}
	return false
}

// A Referrer is an entry of an index that refers to another manifest: its descriptor, its
// manifest (parsed and raw) and its subject.
type Referrer struct {
	Desc     v1.Descriptor
	Manifest *v1.Manifest
	Raw      []byte
	Subject  v1.Hash
}

// ReferrersIn returns the entries of descs (an OCI layout's index.json, a pool bundle's) that
// are artifacts referring to the entries of taken (and to the platforms of those that are
// indexes), or to those, to MaxReferrerDepth, nearest first: by their tag scheme ref name, or
// by their manifest's subject. raw reads a manifest or an index.
func ReferrersIn(descs, taken []v1.Descriptor, raw func(v1.Descriptor) ([]byte, error)) ([]Referrer, error) {
	want := map[v1.Hash]bool{}
	for _, d := range taken {
		want[d.Digest] = true
		if !d.MediaType.IsIndex() {
			continue
		}
		data, err := raw(d)
		if err != nil {
			return nil, err
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("%w: index %s: %w", ErrInvalidMetadata, d.Digest, err)
		}
		for _, c := range idx.Manifests {
			want[c.Digest] = true
		}
	}
	var candidates []Referrer
	for _, d := range descs {
		if want[d.Digest] || !d.MediaType.IsImage() {
			continue
		}
		data, err := raw(d)
		if err != nil {
			return nil, err
		}
		var m v1.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("%w: manifest %s: %w", ErrInvalidMetadata, d.Digest, err)
		}
		r := Referrer{Desc: d, Manifest: &m, Raw: data}
		if h, ok := SchemeSubject(ArtifactTag(d.Annotations)); ok {
			r.Subject = h
		} else if m.Subject != nil {
			r.Subject = m.Subject.Digest
		} else {
			continue
		}
		candidates = append(candidates, r)
	}
	var out []Referrer
	taking := make([]bool, len(candidates))
	for range MaxReferrerDepth {
		var next []v1.Hash
		for i, r := range candidates {
			if !taking[i] && want[r.Subject] {
				taking[i] = true
				out = append(out, r)
				next = append(next, r.Desc.Digest)
			}
		}
		if len(next) == 0 {
			break
		}
		for _, h := range next {
			want[h] = true
		}
	}
	return out, nil
}

package registry

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
)

// MaxReferrers caps the artifacts taken along with one image (those that refer to it, to its
// platforms, and to them): a registry listing more is refused rather than followed.
const MaxReferrers = 1000

// referrers finds, in one repository, the artifacts that refer to images, and those that
// refer to them in turn: by the OCI referrers API (or the fallback tag index where the
// registry serves no API, as remote.Referrers does) and by cosign's tag scheme.
type referrers struct {
	ctx  context.Context
	repo name.Repository
	b    *archive.Bundle
	src  archive.V1Source
	want archive.Referrers
	tags []string // the repository's tags, listed once
	seen map[v1.Hash]bool
}

// A found artifact: its digest, the subject it was listed for, the tag it was found by (""
// for a referrer found by subject) and, when fetched already, its manifest.
type found struct {
	digest, subject v1.Hash
	tag             string
	desc            *remote.Descriptor
}

// take adds to the bundle the artifacts that refer to subjects, one image's manifests, and
// those that refer to them, to archive.MaxReferrerDepth, MaxReferrers in all.
func (r *referrers) take(subjects []v1.Hash) error {
	type next struct {
		subject v1.Hash
		depth   int // how many artifacts stand between it and the image
	}
	var queue []next
	for _, h := range subjects { // a tag naming the image itself is no artifact of it
		r.seen[h] = true
		queue = append(queue, next{subject: h})
	}
	taken := 0
	for len(queue) > 0 {
		at := queue[0]
		queue = queue[1:]
		list, err := r.of(at.subject)
		if err != nil {
			return err
		}
		for _, f := range list {
			if r.seen[f.digest] {
				continue
			}
			r.seen[f.digest] = true
			if taken++; taken > MaxReferrers {
				return fmt.Errorf("%s@%s: over %d artifacts refer to it and to what refers to it: take fewer with --referrers TYPE,... or none", r.repo, subjects[0], MaxReferrers)
			}
			if at.depth >= archive.MaxReferrerDepth {
				return fmt.Errorf("%s@%s: artifacts refer to artifacts over %d deep", r.repo, subjects[0], archive.MaxReferrerDepth)
			}
			a, err := r.add(f)
			if err != nil {
				return fmt.Errorf("artifact %s of %s@%s: %w", f.digest, r.repo, at.subject, err)
			}
			if a != nil {
				queue = append(queue, next{subject: a.Manifest.Digest, depth: at.depth + 1})
			}
		}
	}
	return nil
}

// of lists what refers to subject, by the referrers API, then by the tag scheme: over
// MaxReferrers is refused before any is fetched; those the API says are of a type not
// wanted are left out.
func (r *referrers) of(subject v1.Hash) ([]found, error) {
	idx, err := remote.Referrers(r.repo.Digest(subject.String()), options(r.ctx, nil)...)
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s@%s: %w", r.repo, subject, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("listing the referrers of %s@%s: %w", r.repo, subject, err)
	}
	var out []found
	for _, d := range m.Manifests {
		// The empty config's type says nothing of the artifact's (go-containerregistry's
		// registry lists it where the manifest has an artifactType): fetched to be known.
		if t := d.ArtifactType; t == "" || t == string(types.OCIEmptyJSON) || r.want.Takes(t, "") {
			out = append(out, found{digest: d.Digest, subject: subject})
		}
	}
	if r.tags == nil {
		if r.tags, err = remote.List(r.repo, options(r.ctx, nil)...); err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", r.repo, err)
		}
	}
	prefix := subject.Algorithm + "-" + subject.Hex + "."
	var tags []string
	for _, tag := range r.tags {
		if strings.HasPrefix(tag, prefix) {
			tags = append(tags, tag)
		}
	}
	if len(out)+len(tags) > MaxReferrers {
		return nil, fmt.Errorf("%s@%s: the registry lists %d artifacts that refer to it, over %d: take fewer with --referrers TYPE,... or none", r.repo, subject, len(out)+len(tags), MaxReferrers)
	}
	for _, tag := range tags {
		desc, err := remote.Get(r.repo.Tag(tag), options(r.ctx, nil)...)
		if err != nil {
			return nil, fmt.Errorf("fetching %s:%s: %w", r.repo, tag, err)
		}
		out = append(out, found{digest: desc.Digest, subject: subject, tag: tag, desc: desc})
	}
	return out, nil
}

// add adds one artifact to the bundle, its blobs to be fetched when written; nil when it is
// not of a type wanted, not a manifest (an index is left behind), or, listed by the
// referrers API, a manifest whose subject is not the one it was listed for (a registry's
// listing is not taken on its word).
func (r *referrers) add(f found) (*archive.Artifact, error) {
	desc := f.desc
	if desc == nil {
		var err error
		if desc, err = remote.Get(r.repo.Digest(f.digest.String()), options(r.ctx, nil)...); err != nil {
			return nil, err
		}
	}
	if !desc.MediaType.IsImage() {
		return nil, nil
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, err
	}
	if !r.want.Takes(archive.TypeOf(m), f.tag) || (f.tag == "" && (m.Subject == nil || m.Subject.Digest != f.subject)) {
		return nil, nil
	}
	var tags []string
	if f.tag != "" {
		tags = []string{f.tag}
	}
	return addArtifact(r.ctx, r.b, r.src, r.repo, desc, m, tags)
}

// addArtifact adds the artifact desc, of manifest m, fetched from repo, to b under tags (see
// archive.Bundle.AddArtifact); its config and layers are fetched when written.
func addArtifact(ctx context.Context, b *archive.Bundle, src archive.V1Source, repo name.Repository, desc *remote.Descriptor, m *v1.Manifest, tags []string) (*archive.Artifact, error) {
	a, err := b.AddArtifact(desc.Manifest, desc.MediaType, tags)
	if err != nil {
		return nil, err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		l, err := remote.Layer(repo.Digest(d.Digest.String()), options(ctx, nil)...)
		if err != nil {
			return nil, err
		}
		src[d.Digest] = l
	}
	return a, nil
}

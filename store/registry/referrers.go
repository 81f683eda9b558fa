package registry

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/archive"
)

// MaxReferrers caps the artifacts one read of a registry takes along with its images:
// a registry listing more (or a loop of tags) is refused rather than followed.
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

// A found artifact: its digest, the tag it was found by ("" for a referrer found by subject)
// and, when fetched already, its manifest.
type found struct {
	digest v1.Hash
	tag    string
	desc   *remote.Descriptor
}

// take adds to the bundle the artifacts that refer to subjects, recursively.
func (r *referrers) take(subjects []v1.Hash) error {
	queue := subjects
	for _, h := range subjects { // a tag naming the image itself is no artifact of it
		r.seen[h] = true
	}
	for len(queue) > 0 {
		subject := queue[0]
		queue = queue[1:]
		list, err := r.of(subject)
		if err != nil {
			return err
		}
		if len(r.b.Artifacts)+len(list) > MaxReferrers {
			return fmt.Errorf("%s: over %d artifacts refer to %s and what refers to it: take fewer with --referrers TYPE,... or none", r.repo, MaxReferrers, subject)
		}
		for _, f := range list {
			if r.seen[f.digest] {
				continue
			}
			r.seen[f.digest] = true
			a, err := r.add(f)
			if err != nil {
				return fmt.Errorf("artifact %s of %s@%s: %w", f.digest, r.repo, subject, err)
			}
			if a != nil {
				queue = append(queue, a.Manifest.Digest)
			}
		}
	}
	return nil
}

// of lists what refers to subject: by the referrers API, then by the tag scheme.
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
		out = append(out, found{digest: d.Digest})
	}
	if r.tags == nil {
		if r.tags, err = remote.List(r.repo, options(r.ctx, nil)...); err != nil {
			return nil, fmt.Errorf("listing the tags of %s: %w", r.repo, err)
		}
	}
	prefix := subject.Algorithm + "-" + subject.Hex + "."
	for _, tag := range r.tags {
		if !strings.HasPrefix(tag, prefix) {
			continue
		}
		desc, err := remote.Get(r.repo.Tag(tag), options(r.ctx, nil)...)
		if err != nil {
			return nil, fmt.Errorf("fetching %s:%s: %w", r.repo, tag, err)
		}
		out = append(out, found{digest: desc.Digest, tag: tag, desc: desc})
	}
	return out, nil
}

// add adds one artifact to the bundle, its blobs to be fetched when written; nil when it is
// not of a type wanted, or not a manifest (an index is left behind).
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
	if !r.want.Takes(archive.TypeOf(m), f.tag) {
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

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
	a, err := r.b.AddArtifact(desc.Manifest, desc.MediaType, tags)
	if err != nil {
		return nil, err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		l, err := remote.Layer(r.repo.Digest(d.Digest.String()), options(r.ctx, nil)...)
		if err != nil {
			return nil, err
		}
		r.src[d.Digest] = l
	}
	return a, nil
}

// pushArtifacts pushes to repo the artifacts of b that refer to subject, and those that refer
// to them: blobs first (those repo holds are not sent again), then each manifest under its
// tag scheme tags, or by digest (a referrer: where the registry serves no referrers API,
// remote.Put lists it in the fallback tag index, as cosign and oras do).
func (r *receiver) pushArtifacts(ctx context.Context, b *archive.Bundle, repo name.Repository, subject v1.Hash, depth int) error {
	if depth >= archive.MaxReferrerDepth {
		return nil // the reader refuses deeper chains; a bundle made in memory stops here
	}
	for _, a := range b.Referring(subject) {
		for _, blob := range a.Blobs {
			l, err := archive.BlobLayer(ctx, blob, r.Spool)
			if err == nil {
				err = remote.WriteLayer(repo, l, options(ctx, nil)...)
			}
			if err != nil {
				return fmt.Errorf("pushing blob %s of artifact %s to %s: %w", blob.Digest, a.Manifest.Digest, repo, err)
			}
		}
		refs := []name.Reference{repo.Digest(a.Manifest.Digest.String())}
		if len(a.Tags) > 0 {
			refs = nil
			for _, tag := range a.Tags {
				refs = append(refs, repo.Tag(tag))
			}
		}
		for _, ref := range refs {
			if err := remote.Put(ref, rawManifest{a}, options(ctx, nil)...); err != nil {
				return fmt.Errorf("pushing artifact %s to %s: %w", a.Manifest.Digest, ref, err)
			}
		}
		if err := r.pushArtifacts(ctx, b, repo, a.Manifest.Digest, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// rawManifest is an artifact's manifest as remote.Put takes it: its bytes as they are.
type rawManifest struct{ a *archive.Artifact }

func (m rawManifest) RawManifest() ([]byte, error)        { return m.a.Manifest.Data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.a.MediaType, nil }

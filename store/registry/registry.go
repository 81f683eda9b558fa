// Package registry is a registry as a store and a source: registry:HOST[:PORT][/PREFIX].
// Images go to HOST/PREFIX/REPO:TAG, an image of uncompressed layers (docker's save) with
// them gzip-compressed (pack.go); read, they keep the registry's own manifests and compressed
// blobs, so digests survive.
package registry

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/archive/spool"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:   "registry",
	Syntax: "registry[:HOST[/PREFIX]]",
	Doc:    "a registry, images as HOST/PREFIX/REPO:TAG (bare `registry`: images named whole, as a source only), with their compressed blobs and manifests as pushed (an image whose layers are all uncompressed, as docker saves them, with them gzip-compressed); plain http for localhost and 127.0.0.1, or with --insecure. Reached from this machine, not on a host",
	Check: func(arg string) error {
		_, err := New(arg, false)
		return err
	},
	Open: func(_ context.Context, arg string, env store.Env) (store.Store, error) {
		return New(arg, env.Insecure)
	},
}

// A Store is a registry, or the part of it under a prefix.
type Store struct {
	base     string // HOST[/PREFIX], "" when images are named whole
	insecure bool
}

// New opens the registry store base, HOST[:PORT][/PREFIX] ("" when images are named whole).
func New(base string, insecure bool) (*Store, error) {
	base = strings.TrimSuffix(base, "/")
	s := &Store{base: base, insecure: insecure}
	if base != "" {
		if _, err := name.NewRepository(base+"/x", s.nameOptions()...); err != nil {
			return nil, fmt.Errorf("%w: registry store %q: want registry:HOST[:PORT][/PREFIX]", store.ErrInvalidReference, base)
		}
	}
	return s, nil
}

func (s *Store) String() string {
	if s.base == "" {
		return "registry"
	}
	return "registry:" + s.base
}

func (s *Store) Close() error { return nil }

// nameOptions: plain http is allowed for localhost and 127.0.0.1 by go-containerregistry
// itself, and for any registry with insecure.
func (s *Store) nameOptions() []name.Option {
	if s.insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// options are the go-containerregistry options: credentials from the default keychain
// (docker config, credential helpers).
func options(ctx context.Context, platform *v1.Platform) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if platform != nil {
		opts = append(opts, remote.WithPlatform(*platform))
	}
	return opts
}

// ref resolves an image reference against the store's base.
func (s *Store) ref(ref string) (name.Reference, error) {
	full := ref
	if s.base != "" {
		full = s.base + "/" + ref
	}
	r, err := name.ParseReference(full, s.nameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%w: image %q: %w", store.ErrInvalidReference, ref, err)
	}
	return r, nil
}

// CheckRefs checks image references before anything is read.
func (s *Store) CheckRefs(refs []string) error {
	for _, ref := range refs {
		if _, err := s.ref(ref); err != nil {
			return err
		}
	}
	return nil
}

// Inventory lists the layers of every image tagged in the repositories under the store's
// base (repositories), by blob and by diffID: a load names the blob the registry holds a
// layer in, however compressed.
func (s *Store) Inventory(ctx context.Context) (*dedupe.Inventory, error) {
	if s.base == "" {
		return nil, fmt.Errorf("%w: the inventory of a registry needs registry:HOST[/PREFIX]", store.ErrInvalidReference)
	}
	repos, err := s.repositories(ctx)
	if err != nil {
		return nil, err
	}
	inv := dedupe.NewInventory(dedupe.StoreRegistry)
	for _, repo := range repos {
		if err := s.addRepository(ctx, inv, repo); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// repositories returns the repositories under the store's base: the registry's catalog,
// filtered by the prefix (a repository named exactly HOST/PREFIX counts too); without a
// catalog (many registries keep it to themselves), the prefix as a repository.
func (s *Store) repositories(ctx context.Context) ([]name.Repository, error) {
	host, prefix, _ := strings.Cut(s.base, "/")
	reg, err := name.NewRegistry(host, s.nameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("%w: registry %q: %w", store.ErrInvalidReference, host, err)
	}
	names, err := remote.Catalog(ctx, reg, options(ctx, nil)...)
	if err != nil && prefix != "" {
		return []name.Repository{reg.Repo(prefix)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the repositories of %s: %w", host, err)
	}
	var repos []name.Repository
	for _, repo := range names {
		if prefix == "" || repo == prefix || strings.HasPrefix(repo, prefix+"/") {
			repos = append(repos, reg.Repo(repo))
		}
	}
	return repos, nil
}

// addRepository records the layers of every image tagged in repo, and the artifacts that
// refer to them.
func (s *Store) addRepository(ctx context.Context, inv *dedupe.Inventory, repo name.Repository) error {
	tags, err := remote.List(repo, options(ctx, nil)...)
	if err != nil {
		return fmt.Errorf("listing %s: %w", repo, err)
	}
	var images [][]v1.Hash // each tag's manifests: what artifacts may refer to
	for _, tag := range tags {
		if _, ok := archive.SchemeSubject(tag); ok {
			continue // an artifact, or the fallback tag index: found from its subject below
		}
		desc, err := remote.Get(repo.Tag(tag), options(ctx, nil)...)
		if err != nil {
			return fmt.Errorf("reading %s:%s: %w", repo, tag, err)
		}
		subjects := []v1.Hash{desc.Digest}
		switch m := archiveArtifact(desc); {
		case desc.MediaType.IsIndex():
			idx, err := desc.ImageIndex()
			var im *v1.IndexManifest
			if err == nil {
				im, err = idx.IndexManifest()
			}
			if err == nil {
				err = inv.AddIndex(idx)
			}
			if err != nil {
				return fmt.Errorf("reading %s:%s: %w", repo, tag, err)
			}
			for _, d := range im.Manifests {
				subjects = append(subjects, d.Digest)
			}
		case m != nil: // an artifact of its own (a Helm chart)
			held := []v1.Hash{desc.Digest, m.Config.Digest}
			for _, l := range m.Layers {
				held = append(held, l.Digest)
			}
			inv.AddBlob(held...)
		default:
			img, err := desc.Image()
			if err == nil {
				err = inv.AddV1Image(img)
			}
			if err != nil {
				return fmt.Errorf("reading %s:%s: %w", repo, tag, err)
			}
		}
		images = append(images, subjects)
	}
	// The artifacts that refer to the images: their manifests and blobs.
	refs := &referrers{ctx: ctx, repo: repo, b: &archive.Bundle{}, src: archive.V1Source{}, want: archive.AllReferrers, tags: tags, seen: map[v1.Hash]bool{}}
	for _, subjects := range images {
		if err := refs.take(subjects); err != nil {
			return err
		}
	}
	var held []v1.Hash
	for _, a := range refs.b.Artifacts {
		held = append(held, a.Manifest.Digest)
		for _, blob := range a.Blobs {
			held = append(held, blob.Digest)
		}
	}
	inv.AddBlob(held...)
	return nil
}

// Open reads images from the registry: their original manifests, configs and compressed
// layers, fetched when written.
func (s *Store) Open(ctx context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	b, src := &archive.Bundle{}, archive.V1Source{}
	for _, ref := range refs {
		if err := s.add(ctx, b, src, ref, opts); err != nil {
			return nil, err
		}
	}
	return store.NewImages(b, src, nil).Counted(opts.Progress), nil
}

func (s *Store) add(ctx context.Context, b *archive.Bundle, src archive.V1Source, ref string, opts store.ReadOptions) error {
	r, err := s.ref(ref)
	if err != nil {
		return err
	}
	platform := opts.PlatformOrHost()
	desc, err := remote.Get(r, options(ctx, &platform)...)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", r, err)
	}
	var tags []string
	if t, ok := r.(name.Tag); ok {
		tags = []string{archive.Familiar(t)}
	}
	var subjects []v1.Hash // what artifacts may refer to: the index, each image
	switch {
	case desc.MediaType.IsIndex() && opts.AllPlatforms:
		idx, err := desc.ImageIndex()
		if err != nil {
			return fmt.Errorf("reading index %s: %w", r, err)
		}
		if _, err = b.AddIndex(idx, tags, platform, src); err != nil {
			return err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		subjects = append(subjects, desc.Digest)
		for _, d := range m.Manifests {
			subjects = append(subjects, d.Digest)
		}
	case desc.MediaType.IsImage() && archiveArtifact(desc) != nil:
		// An artifact of its own (a Helm chart): taken as it is, under its tag.
		if _, err := addArtifact(ctx, b, src, r.Context(), desc, archiveArtifact(desc), tags); err != nil {
			return fmt.Errorf("reading artifact %s: %w", r, err)
		}
		subjects = append(subjects, desc.Digest)
	default:
		img, err := desc.Image() // picks the platform from an index
		if err != nil {
			return fmt.Errorf("reading image %s: %w", r, err)
		}
		if desc.MediaType.IsIndex() {
			if m, err := v1.ParseIndexManifest(bytes.NewReader(desc.Manifest)); err == nil {
				opts.NoteLeftOut(ref, m, platform)
			}
		}
		im, err := b.AddImage(img, tags, src)
		if err != nil {
			return err
		}
		subjects = append(subjects, im.Manifest.Digest)
	}
	if !opts.Referrers.Any() {
		return nil
	}
	refs := &referrers{ctx: ctx, repo: r.Context(), b: b, src: src, want: opts.Referrers, seen: map[v1.Hash]bool{}}
	return refs.take(subjects)
}

// archiveArtifact returns the manifest fetched when it is an artifact's rather than an
// image's, else nil.
func archiveArtifact(desc *remote.Descriptor) *v1.Manifest {
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil || !archive.IsArtifact(desc.Descriptor, m) {
		return nil
	}
	return m
}

// Receive spools a bundle, then pushes each image under HOST/PREFIX/REPO:TAG once it is
// verified, an image of uncompressed layers that nothing refers to with them gzip-compressed
// (pack.go). Blobs go before manifests, and blobs the registry holds are not sent again, so a
// failed push leaves no tag pointing at less than a whole image.
func (s *Store) Receive(context.Context) (store.Receiver, error) {
	if s.base == "" {
		return nil, fmt.Errorf("%w: name where images go: registry:HOST[/PREFIX]", store.ErrInvalidReference)
	}
	sp, err := spool.New("", archive.WriteOptions{})
	if err != nil {
		return nil, err
	}
	return &receiver{Spool: sp, s: s}, nil
}

type receiver struct {
	*spool.Spool
	s      *Store
	loaded []store.Loaded
}

func (r *receiver) Commit(ctx context.Context, b *archive.Bundle) error {
	defer r.Close()
	// Every push is planned and every blob a thin bundle leaves out checked before anything
	// is pushed: a bundle the registry cannot complete leaves it as it was.
	pushes, err := r.plan(b)
	if err != nil {
		return err
	}
	pk := newPacking(b, pushes)
	defer pk.Close()
	for _, p := range pushes {
		if err := r.s.holdsMissing(ctx, p, pk); err != nil {
			return err
		}
	}
	// Uncompressed layers go compressed (pack.go): the images that name them are pushed as
	// rewritten.
	if err := pk.compress(ctx, b, r.Spool); err != nil {
		return err
	}
	if err := pk.mount(ctx); err != nil {
		return err
	}
	rb, src, err := pk.repack(b, r.Spool)
	if err != nil {
		return err
	}
	for _, p := range pushes {
		if i := slices.Index(b.Images, p.img); i >= 0 {
			p.img = rb.Images[i]
		}
		if err := r.push(ctx, b, src, p); err != nil {
			return err
		}
		if p.loaded != nil {
			r.loaded = append(r.loaded, *p.loaded)
		}
	}
	return nil
}

// A push is one thing the registry takes: an image (pushed by remote.Write, which sends its
// layers in parallel), or the tree of an index or an artifact, blobs first, then its
// manifests by digest, the last under refs.
type push struct {
	repo      name.Repository
	refs      []name.Reference
	img       *archive.Image
	blobs     []*archive.Blob
	manifests []v1.Descriptor
	loaded    *store.Loaded // what the push names, for Loaded
}

// plan lists the pushes of b: each image under HOST/PREFIX/REPO:TAG (a multi-platform index
// whole, where the bundle holds it tagged so), each artifact of its own under its tags, then
// into each repository, the artifacts that refer to what went there, and those that refer to
// them: under their tag scheme tags, or by digest (a referrer: where the registry serves no
// referrers API, remote.Put lists it in the fallback tag index, as cosign and oras do).
func (r *receiver) plan(b *archive.Bundle) ([]push, error) {
	p := &planner{r: r, b: b, subjects: map[name.Repository][]v1.Hash{}}
	if err := p.images(); err != nil {
		return nil, err
	}
	if err := p.named(); err != nil {
		return nil, err
	}
	if err := p.referrers(); err != nil {
		return nil, err
	}
	return p.pushes, nil
}

// A planner is what planning a bundle's pushes knows: the pushes so far, and the manifests
// each repository takes, which artifacts may refer to.
type planner struct {
	r        *receiver
	b        *archive.Bundle
	pushes   []push
	repos    []name.Repository // in the order they come
	subjects map[name.Repository][]v1.Hash
}

// target is where tag goes.
func (p *planner) target(tag string) (name.Tag, error) {
	t, _ := archive.ParseTag(tag)
	target, err := name.NewTag(p.r.s.base+"/"+strings.TrimPrefix(t.RepositoryStr(), "library/")+":"+t.TagStr(), p.r.s.nameOptions()...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("pushing %s: %w", tag, err)
	}
	if !slices.Contains(p.repos, target.Context()) {
		p.repos = append(p.repos, target.Context())
	}
	return target, nil
}

// tree plans the push of what d reaches under t.
func (p *planner) tree(t name.Tag, d v1.Descriptor, loaded *store.Loaded) error {
	blobs, manifests, err := p.b.Tree(d)
	if err != nil {
		return fmt.Errorf("pushing %s: %w", t, err)
	}
	p.pushes = append(p.pushes, push{repo: t.Context(), refs: []name.Reference{t}, blobs: blobs, manifests: manifests, loaded: loaded})
	for _, m := range manifests {
		p.subjects[t.Context()] = append(p.subjects[t.Context()], m.Digest)
	}
	return nil
}

// images plans the images under their tags, a multi-platform index kept whole as a tree.
func (p *planner) images() error {
	for _, img := range p.b.Images {
		if len(img.RepoTags) == 0 {
			return fmt.Errorf("image %s has no tag to push it under", img.ID())
		}
		for _, tag := range img.RepoTags {
			t, err := p.target(tag)
			if err != nil {
				return err
			}
			loaded := &store.Loaded{Ref: t.String(), ID: img.ID()}
			if idx, ok := taggedIndex(p.b, tag); ok {
				if err := p.tree(t, idx, loaded); err != nil {
					return err
				}
				continue
			}
			var blobs []*archive.Blob
			for _, l := range img.Layers {
				blobs = append(blobs, l.Blob)
			}
			p.pushes = append(p.pushes, push{repo: t.Context(), refs: []name.Reference{t}, img: img, blobs: blobs, loaded: loaded})
			p.subjects[t.Context()] = append(p.subjects[t.Context()], img.Manifest.Digest)
		}
	}
	return nil
}

// named plans the artifacts of their own (Helm charts) under their tags.
func (p *planner) named() error {
	for _, a := range p.b.Artifacts {
		for _, tag := range a.RepoTags {
			t, err := p.target(tag)
			if err != nil {
				return err
			}
			if err := p.tree(t, a.Descriptor(), &store.Loaded{Ref: t.String(), ID: a.Manifest.Digest}); err != nil {
				return err
			}
		}
	}
	return nil
}

// referrers plans, into each repository, the artifacts that refer to what goes there, and
// those that refer to them.
func (p *planner) referrers() error {
	for _, repo := range p.repos {
		queue, planned := p.subjects[repo], map[v1.Hash]bool{}
		for len(queue) > 0 {
			subject := queue[0]
			queue = queue[1:]
			for _, a := range p.b.Referring(subject) {
				if planned[a.Manifest.Digest] {
					continue
				}
				planned[a.Manifest.Digest] = true
				ps := push{repo: repo, refs: []name.Reference{repo.Digest(a.Manifest.Digest.String())}}
				if len(a.Tags) > 0 {
					ps.refs = nil
					for _, tag := range a.Tags {
						ps.refs = append(ps.refs, repo.Tag(tag))
					}
				}
				var err error
				if ps.blobs, ps.manifests, err = p.b.Tree(a.Descriptor()); err != nil {
					return fmt.Errorf("pushing artifact %s to %s: %w", a.Manifest.Digest, repo, err)
				}
				p.pushes = append(p.pushes, ps)
				queue = append(queue, a.Manifest.Digest)
			}
		}
	}
	return nil
}

// taggedIndex returns the multi-platform index b's index.json gives tag, if any.
func taggedIndex(b *archive.Bundle, tag string) (v1.Descriptor, bool) {
	for _, d := range b.Index.Manifests {
		if d.MediaType.IsIndex() && archive.RefTag(d.Annotations) == tag {
			return d, true
		}
	}
	return v1.Descriptor{}, false
}

// push pushes p, its blobs from src: blobs the registry holds are not sent again.
func (r *receiver) push(ctx context.Context, b *archive.Bundle, src archive.BlobSource, p push) error {
	if p.img != nil {
		v1img, err := p.img.V1(ctx, src)
		if err == nil {
			err = remote.Write(p.refs[0].(name.Tag), v1img, options(ctx, nil)...)
		}
		if err != nil {
			return fmt.Errorf("pushing %s: %w", p.refs[0], err)
		}
		return nil
	}
	for _, blob := range p.blobs {
		l, err := archive.BlobLayer(ctx, blob, src)
		if err == nil {
			err = remote.WriteLayer(p.repo, l, options(ctx, nil)...)
		}
		if err != nil {
			return fmt.Errorf("pushing blob %s to %s: %w", blob.Digest, p.repo, err)
		}
	}
	for i, m := range p.manifests {
		refs := []name.Reference{p.repo.Digest(m.Digest.String())}
		if i == len(p.manifests)-1 {
			refs = p.refs
		}
		blob, _ := b.Blob(m.Digest) // Tree checked that it is there
		for _, ref := range refs {
			if err := remote.Put(ref, rawManifest{blob.Data, m.MediaType}, options(ctx, nil)...); err != nil {
				return fmt.Errorf("pushing %s: %w", ref, err)
			}
		}
	}
	return nil
}

// rawManifest is a manifest as remote.Put takes it: its bytes as they are.
type rawManifest struct {
	data []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.data, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func (r *receiver) Loaded() []store.Loaded { return r.loaded }

// KeepsOCI: indexes go whole under their tags; artifacts under their tags, or by digest, into
// each repository their subject goes to (store.OCIKeeper).
func (s *Store) KeepsOCI() {}

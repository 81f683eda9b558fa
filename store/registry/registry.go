// Package registry is a registry as a store and a source: registry:HOST[:PORT][/PREFIX].
// Images go to HOST/PREFIX/REPO:TAG; read, they keep the registry's own manifests and
// compressed blobs, so digests survive.
package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/archive/spool"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:   "registry",
	Syntax: "registry[:HOST[/PREFIX]]",
	Doc:    "a registry, images as HOST/PREFIX/REPO:TAG (bare `registry`: images named whole, as a source only), with their compressed blobs and manifests as pushed (layers a bundle carries uncompressed: gzip-compressed); plain http for localhost and 127.0.0.1, or with --insecure. Reached from this machine, not on a host",
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
// base (repositories): by blob and by diffID, since a load names the blob the registry
// holds a layer in however it is compressed.
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
		if err := s.eachImage(ctx, repo, inv.AddV1Image); err != nil {
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

// eachImage calls fn with every image tagged in repo, each image of an index included
// (nested indexes too); a repository that does not exist has none.
func (s *Store) eachImage(ctx context.Context, repo name.Repository, fn func(v1.Image) error) error {
	tags, err := remote.List(repo, options(ctx, nil)...)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", repo, err)
	}
	var index func(idx v1.ImageIndex) error
	index = func(idx v1.ImageIndex) error {
		m, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range m.Manifests {
			switch {
			case d.MediaType.IsIndex():
				child, err := idx.ImageIndex(d.Digest)
				if err == nil {
					err = index(child)
				}
				if err != nil {
					return err
				}
			case d.MediaType.IsImage():
				img, err := idx.Image(d.Digest)
				if err == nil {
					err = fn(img)
				}
				if err != nil {
					return fmt.Errorf("image %s: %w", d.Digest, err)
				}
			}
		}
		return nil
	}
	for _, tag := range tags {
		desc, err := remote.Get(repo.Tag(tag), options(ctx, nil)...)
		if err == nil && desc.MediaType.IsIndex() {
			var idx v1.ImageIndex
			if idx, err = desc.ImageIndex(); err == nil {
				err = index(idx)
			}
		} else if err == nil {
			var img v1.Image
			if img, err = desc.Image(); err == nil {
				err = fn(img)
			}
		}
		if err != nil {
			return fmt.Errorf("reading %s:%s: %w", repo, tag, err)
		}
	}
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
	if desc.MediaType.IsIndex() && opts.AllPlatforms {
		idx, err := desc.ImageIndex()
		if err != nil {
			return fmt.Errorf("reading index %s: %w", r, err)
		}
		_, err = b.AddIndex(idx, tags, platform, src)
		return err
	}
	img, err := desc.Image() // picks the platform from an index
	if err != nil {
		return fmt.Errorf("reading image %s: %w", r, err)
	}
	_, err = b.AddImage(img, tags, src)
	return err
}

// Receive spools a bundle, then pushes each image under HOST/PREFIX/REPO:TAG once it is
// verified, its uncompressed layers gzip-compressed (pack.go). Blobs go before manifests, and
// blobs the registry holds are not sent again, so a failed push leaves no tag pointing at
// less than a whole image.
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
	p := newPacking()
	defer p.Close()
	// Every target and every blob a thin bundle leaves out are checked before anything is
	// pushed: a bundle the registry cannot complete leaves it as it was.
	targets := make([][]name.Tag, len(b.Images))
	for i, img := range b.Images {
		if len(img.RepoTags) == 0 {
			return fmt.Errorf("image %s has no tag to push it under", img.ID())
		}
		for _, tag := range img.RepoTags {
			t, _ := archive.ParseTag(tag)
			target, err := name.NewTag(r.s.base+"/"+strings.TrimPrefix(t.RepositoryStr(), "library/")+":"+t.TagStr(), r.s.nameOptions()...)
			if err != nil {
				return fmt.Errorf("pushing %s: %w", tag, err)
			}
			if err := r.s.holdsMissing(ctx, img, target.Context(), p); err != nil {
				return err
			}
			targets[i] = append(targets[i], target)
		}
	}
	if err := p.compress(ctx, b, r.Spool); err != nil {
		return err
	}
	if err := p.mount(ctx); err != nil {
		return err
	}
	rb, src, err := p.repack(b, r.Spool)
	if err != nil {
		return err
	}
	for i, img := range rb.Images {
		v1img, err := img.V1(ctx, src)
		if err != nil {
			return err
		}
		for _, target := range targets[i] {
			if err := remote.Write(target, v1img, options(ctx, nil)...); err != nil {
				return fmt.Errorf("pushing %s: %w", target, err)
			}
			r.loaded = append(r.loaded, store.Loaded{Ref: target.String(), ID: img.ID()})
		}
	}
	return nil
}

func (r *receiver) Loaded() []store.Loaded { return r.loaded }

// Package oci is the OCI image layout directory as a store and a source: oci:DIR[:REF], on
// this machine or on a host over SFTP. Both go through dedupe.Layout, over the local file
// system or the host's, and take the same lock files.
package oci

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:   "oci",
	Syntax: "oci:DIR[:REF]",
	Doc:    "an OCI image layout directory. As a source, REF picks an image (its full name, as docker names it, or its tag); as a store, only the blobs it lacks are written, each verified, and index.json last, under .ferry.lock. On a host, over SFTP",
	Remote: true,
	Place:  true,
	Implicit: func(context.Context) (string, error) {
		return DefaultDir()
	},
	Check: store.DirArg,
	Open: func(_ context.Context, arg string, env store.Env) (store.Store, error) {
		dir, _ := store.CutRef(arg)
		if env.Host == nil {
			return Open(dedupe.LocalFS{}, dir, "oci:"+dir, nil, env.Waiting)
		}
		c, err := env.Host.SFTP()
		if err != nil {
			return nil, err
		}
		s, err := Open(newSFTPFS(c, env.Stall), dir, env.On("oci:"+dir), c.Close, env.Waiting)
		if err != nil {
			c.Close()
		}
		return s, err
	},
}

// A Store is an OCI image layout directory.
type Store struct {
	*dedupe.Layout
	name  string
	close func() error
}

// Open opens the layout dir on fsys; close, if set, releases fsys; waiting, if set, is told
// when a lock is waited for.
func Open(fsys dedupe.FS, dir, name string, close func() error, waiting func(string)) (*Store, error) {
	l, err := dedupe.OpenLayoutFS(fsys, dir)
	if err != nil {
		return nil, err
	}
	l.Waiting = waiting
	return &Store{Layout: l, name: name, close: close}, nil
}

func (s *Store) String() string { return s.name }

func (s *Store) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

// Inventory lists every blob the layout holds (whole ones a cut transfer left too) and the
// layers of the images its index names.
func (s *Store) Inventory(context.Context) (*dedupe.Inventory, error) { return s.Layout.Inventory() }

// Receive stages a bundle in the layout; its commit names the images in index.json.
func (s *Store) Receive(context.Context) (store.Receiver, error) {
	r := &receiver{}
	var err error
	r.Stage, err = s.Stage(func(b *archive.Bundle) error {
		if err := s.AddToIndex(Named(b.Index.Manifests)); err != nil {
			return err
		}
		r.loaded = store.LoadedImages(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	return r, nil
}

type receiver struct {
	*dedupe.Stage
	loaded []store.Loaded
}

func (r *receiver) Loaded() []store.Loaded { return r.loaded }

// KeepsOCI: index.json lists what the bundle's lists, indexes and artifacts too, tag scheme
// artifacts under their tags as ref names (store.OCIKeeper).
func (s *Store) KeepsOCI() {}

// Named gives each index entry the image's full name, as docker writes it ("corpus/app:1",
// "127.0.0.1:5000/app:1"), as its ref name: two repositories with the same tag never
// shadow each other, and skopeo finds an image as oci:DIR:corpus/app:1.
func Named(descs []v1.Descriptor) []v1.Descriptor {
	out := make([]v1.Descriptor, len(descs))
	for i, d := range descs {
		if tag := archive.RefTag(d.Annotations); tag != "" {
			ann := map[string]string{}
			for k, v := range d.Annotations {
				ann[k] = v
			}
			ann["org.opencontainers.image.ref.name"] = tag
			d.Annotations = ann
		}
		out[i] = d
	}
	return out
}

// Open reads images of the layout: refs are names or tags ("" for the only image).
func (s *Store) Open(ctx context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	if _, ok := s.FS.(dedupe.LocalFS); !ok {
		return nil, errors.New("reading images from a layout on a host is not supported: run ferry there")
	}
	b, src := &archive.Bundle{}, archive.V1Source{}
	for _, ref := range refs {
		if err := addImage(b, src, s.Dir, ref, opts); err != nil {
			return nil, err
		}
	}
	return store.NewImages(b, src, nil).Counted(opts.Progress), nil
}

// addImage adds an image of the OCI layout dir to b (or an artifact of its own, such as a
// Helm chart), with the artifacts of the layout that refer to it that opts takes.
func addImage(b *archive.Bundle, src archive.V1Source, dir, ref string, opts store.ReadOptions) error {
	lp, err := layout.FromPath(dir)
	if err != nil {
		return fmt.Errorf("opening OCI layout %s: %w", dir, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return fmt.Errorf("reading %s/index.json: %w", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("reading %s/index.json: %w", dir, err)
	}
	desc, err := find(m.Manifests, dir, ref)
	if err != nil {
		return err
	}
	tags := []string{}
	if tag := archive.RefTag(desc.Annotations); tag != "" {
		tags = append(tags, tag)
	}
	taken := []v1.Descriptor{desc}
	switch {
	case desc.MediaType.IsIndex() && opts.AllPlatforms:
		child, err := idx.ImageIndex(desc.Digest)
		if err == nil {
			_, err = b.AddIndex(child, tags, opts.PlatformOrHost(), src)
		}
		if err != nil {
			return err
		}
	case desc.MediaType.IsIndex():
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return err
		}
		if desc, err = archive.PickPlatform(child, opts.PlatformOrHost()); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if cm, err := child.IndexManifest(); err == nil {
			opts.NoteLeftOut(cmp.Or(ref, dir), cm, opts.PlatformOrHost())
		}
		idx, taken = child, []v1.Descriptor{desc} // the image is the child index's
		fallthrough
	default:
		if err := addManifest(b, src, idx, desc, nil, tags); err != nil {
			return fmt.Errorf("reading %s from %s: %w", desc.Digest, dir, err)
		}
	}
	if !opts.Referrers.Any() {
		return nil
	}
	refs, err := archive.ReferrersIn(m.Manifests, taken, func(d v1.Descriptor) ([]byte, error) { return lp.Bytes(d.Digest) })
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, r := range refs {
		tag := archive.ArtifactTag(r.Desc.Annotations)
		if _, ok := b.Blob(r.Subject); !ok || !opts.Referrers.Takes(archive.TypeOf(r.Manifest), tag) {
			continue // not taken, or what it refers to was not
		}
		var tags []string
		if tag != "" {
			tags = []string{tag}
		}
		if err := addManifest(b, src, idx, r.Desc, r.Manifest, tags); err != nil {
			return fmt.Errorf("reading artifact %s from %s: %w", r.Desc.Digest, dir, err)
		}
	}
	return nil
}

// addManifest adds the image or artifact desc names in the layout to b, under tags; m is its
// manifest if already read.
func addManifest(b *archive.Bundle, src archive.V1Source, idx v1.ImageIndex, desc v1.Descriptor, m *v1.Manifest, tags []string) error {
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return err
	}
	if m == nil {
		if m, err = img.Manifest(); err != nil {
			return err
		}
	}
	if !archive.IsArtifact(desc, m) {
		_, err = b.AddImage(img, tags, src)
		return err
	}
	raw, err := img.RawManifest()
	if err == nil {
		_, err = b.AddArtifact(raw, desc.MediaType, tags)
	}
	if err != nil {
		return err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if src[d.Digest], err = img.LayerByDigest(d.Digest); err != nil {
			return err
		}
	}
	return nil
}

// find finds the entry for ref: the one whose ref name, image name or tag is ref, or the
// only entry when ref is "". A tag two repositories share is ambiguous: name the image.
func find(descs []v1.Descriptor, dir, ref string) (v1.Descriptor, error) {
	if ref == "" {
		if len(descs) != 1 {
			return v1.Descriptor{}, fmt.Errorf("OCI layout %s holds %d images: name one as oci:%s:NAME", dir, len(descs), dir)
		}
		return descs[0], nil
	}
	var found []v1.Descriptor
	for _, d := range descs {
		names := []string{d.Annotations["org.opencontainers.image.ref.name"], archive.RefTag(d.Annotations), d.Annotations["io.containerd.image.name"]}
		for _, n := range names {
			if n != "" && n == ref {
				return d, nil
			}
		}
		if tag := archive.RefTag(d.Annotations); tag != "" && strings.HasSuffix(tag, ":"+ref) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return v1.Descriptor{}, fmt.Errorf("OCI layout %s has no image %q", dir, ref)
	}
	return v1.Descriptor{}, fmt.Errorf("OCI layout %s holds several images tagged %q: name one, e.g. oci:%s:%s", dir, ref, dir, archive.RefTag(found[0].Annotations))
}

// DefaultDir is the OCI layout store ferry loads into when no docker daemon answers:
// $XDG_DATA_HOME/ferry/oci, else ~/.local/share/ferry/oci.
func DefaultDir() (string, error) {
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "ferry", "oci"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no home directory for the default OCI store: set XDG_DATA_HOME or pass --to")
	}
	return filepath.Join(home, ".local", "share", "ferry", "oci"), nil
}

// Tagged lists the tags of the layout's images (send --all, a content index), sorted.
func (s *Store) Tagged(context.Context) ([]string, error) {
	if _, ok := s.FS.(dedupe.LocalFS); !ok {
		return nil, errors.New("listing the images of a layout on a host is not supported: run ferry there")
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "index.json")); os.IsNotExist(err) {
		return nil, nil // no layout yet: no images
	}
	lp, err := layout.FromPath(s.Dir)
	if err != nil {
		return nil, err
	}
	m, err := lp.ImageIndex()
	if err == nil {
		var idx *v1.IndexManifest
		if idx, err = m.IndexManifest(); err == nil {
			var tags []string
			for _, d := range idx.Manifests {
				if tag := archive.RefTag(d.Annotations); tag != "" && !slices.Contains(tags, tag) {
					tags = append(tags, tag)
				}
			}
			slices.Sort(tags)
			return tags, nil
		}
	}
	return nil, fmt.Errorf("reading %s/index.json: %w", s.Dir, err)
}

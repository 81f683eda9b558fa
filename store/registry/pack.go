package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/leftover"
)

// Layers go into a registry compressed, as docker push and skopeo put them: its pullers
// (every node of a cluster, each time it pulls) then move less than half the bytes. A
// layer a bundle carries uncompressed (a docker save's) is gzip-compressed the way ferry
// compresses (archive.Pack: the same layer always gives the same blob) and the manifests
// naming it rewritten. Only images whose every layer is uncompressed, as docker saves them,
// are rewritten so: an image with a compressed layer is a registry's (or docker's containerd
// store's), and goes as it came, its manifest keeping its digest. So do the images something
// refers to (a signature names its image's manifest digest) and the images of a
// multi-platform index pushed whole: their layers go as they are, and no other image's
// rewriting touches them. A layer a thin bundle leaves out must be in the registry: as the
// bundle names it, in the target repository or mounted from another under the store's base,
// or, for a layer that may be rewritten, compressed, found by its diffID among the images
// there.

// A packing is what a push sends in place of the bundle's own blobs: the compressed layers
// (files under dir), and the blobs the registry holds the left-out layers in.
type packing struct {
	may   map[v1.Hash]bool // layer blobs that may go otherwise than as they are
	dir   string
	files map[v1.Hash]string        // compressed layer blob → its file
	repl  map[v1.Hash]v1.Descriptor // layer blob → the blob it goes as
	held  map[v1.Hash]bool          // blobs the registry holds, left out of the push
	// mounts are blobs the registry holds in other repositories than those pushed to.
	mounts []mount
	layers *heldLayers // what the registry holds, once read
}

// newPacking finds the layers of b that may be pushed otherwise than as they are: those of
// images pushed alone, all of whose layers are uncompressed and that nothing refers to, and
// of no other push.
func newPacking(b *archive.Bundle, pushes []push) *packing {
	p := &packing{may: map[v1.Hash]bool{}, files: map[v1.Hash]string{}, repl: map[v1.Hash]v1.Descriptor{}, held: map[v1.Hash]bool{}}
	kept := map[v1.Hash]bool{}
	for _, ps := range pushes {
		free := ps.img != nil && len(b.Referring(ps.img.Manifest.Digest)) == 0 &&
			!slices.ContainsFunc(ps.img.Layers, func(l *archive.Layer) bool { return archive.GzipType(l.MediaType) == "" })
		for _, blob := range ps.blobs {
			if free {
				p.may[blob.Digest] = true
			} else {
				kept[blob.Digest] = true
			}
		}
	}
	for d := range kept {
		delete(p.may, d)
	}
	return p
}

// compress compresses the bundle's uncompressed layers, each once, from src.
func (p *packing) compress(ctx context.Context, b *archive.Bundle, src archive.BlobSource) error {
	for _, l := range b.LayerOrder() {
		gz := archive.GzipType(l.MediaType)
		if gz == "" || !l.Present() || !p.may[l.Digest] {
			continue
		}
		if _, done := p.repl[l.Digest]; done {
			continue
		}
		if p.dir == "" {
			leftover.Clean("", "ferry-pack-") // a killed run's
			dir, err := os.MkdirTemp("", leftover.Pattern("ferry-pack-"))
			if err != nil {
				return err
			}
			p.dir = dir
		}
		f, err := os.CreateTemp(p.dir, "layer-")
		if err != nil {
			return err
		}
		rc, err := src.Open(ctx, l.Blob)
		var packed archive.Packed
		if err == nil {
			packed, err = archive.Pack(f, archive.ContextReader(ctx, io.LimitReader(rc, l.Size)), compress.DefaultLevel)
			rc.Close()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && packed.Raw != l.Digest {
			err = fmt.Errorf("%w: layer %s hashes to %s", archive.ErrDigestMismatch, l.Digest, packed.Raw)
		}
		if err != nil {
			return fmt.Errorf("compressing layer %s: %w", l.Digest, err)
		}
		p.files[packed.Digest] = f.Name()
		p.repl[l.Digest] = v1.Descriptor{MediaType: gz, Digest: packed.Digest, Size: packed.Size}
	}
	return nil
}

// repack returns b with its layers as the push sends them, and the source of their blobs.
func (p *packing) repack(b *archive.Bundle, src archive.BlobSource) (*archive.Bundle, archive.BlobSource, error) {
	rb, err := b.Repack(func(l *archive.Layer) (v1.Descriptor, bool) {
		d, ok := p.repl[l.Digest]
		return d, ok
	})
	if err != nil {
		return nil, nil, err
	}
	rb = rb.LeaveOut(func(blob *archive.Blob) bool { return p.held[blob.Digest] })
	return rb, packedSource{p, src}, nil
}

func (p *packing) Close() error {
	if p.dir == "" {
		return nil
	}
	return os.RemoveAll(p.dir)
}

// packedSource serves the compressed layers from their files, the rest from the spool.
type packedSource struct {
	p   *packing
	src archive.BlobSource
}

func (s packedSource) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	if path, ok := s.p.files[b.Digest]; ok {
		return os.Open(path)
	}
	return s.src.Open(ctx, b)
}

// A heldBlob is a layer blob the registry holds, in a repository.
type heldBlob struct {
	repo name.Repository
	desc v1.Descriptor
}

// heldLayers are the layer blobs of the images under the store's base, by digest and by
// diffID.
type heldLayers struct {
	byDigest, byDiffID map[v1.Hash]heldBlob
}

// held reads the layer blobs of the images under the store's base, once.
func (s *Store) held(ctx context.Context, p *packing) (*heldLayers, error) {
	if p.layers != nil {
		return p.layers, nil
	}
	repos, err := s.repositories(ctx)
	if err != nil {
		return nil, err
	}
	h := &heldLayers{byDigest: map[v1.Hash]heldBlob{}, byDiffID: map[v1.Hash]heldBlob{}}
	for _, repo := range repos {
		err := s.eachImage(ctx, repo, func(img v1.Image) error {
			m, err := img.Manifest()
			if err != nil {
				return err
			}
			cfg, err := img.ConfigFile()
			if err != nil {
				return err
			}
			for i, d := range m.Layers {
				b := heldBlob{repo, d}
				h.byDigest[d.Digest] = b
				if len(cfg.RootFS.DiffIDs) == len(m.Layers) {
					h.byDiffID[cfg.RootFS.DiffIDs[i]] = b
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	p.layers = h
	return h, nil
}

// holdsMissing checks that the registry holds every blob p's bundle leaves out, for p's
// repository: the blob the bundle names, there or, mounted from there, in another repository
// under the store's base; or, for a layer that may go otherwise, the blob the registry holds
// it in, however compressed (found by diffID), which the push then names.
func (s *Store) holdsMissing(ctx context.Context, p push, pk *packing) error {
	for _, blob := range p.blobs {
		if blob.Present() {
			continue
		}
		want := blob.Digest
		if d, ok := pk.repl[blob.Digest]; ok { // found otherwise compressed for another repository
			want = d.Digest
		}
		ok, err := s.holdsBlob(ctx, p.repo, want)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		h, err := s.held(ctx, pk)
		if err != nil {
			return err
		}
		if b, ok := h.byDigest[want]; ok {
			pk.mounts = append(pk.mounts, mount{p.repo, b})
			continue
		}
		if b, ok := h.byDiffID[diffID(p.img, blob)]; ok && want == blob.Digest && pk.may[blob.Digest] {
			pk.repl[blob.Digest], pk.held[b.desc.Digest] = b.desc, true
			if b.repo != p.repo {
				pk.mounts = append(pk.mounts, mount{p.repo, b})
			}
			continue
		}
		return fmt.Errorf("%w: the bundle leaves out blob %s and %s does not have it: push the bundle it comes from first",
			archive.ErrMissingBlob, blob.Digest, p.repo)
	}
	return nil
}

// diffID returns the diffID of the layer of img that blob is, or the zero hash.
func diffID(img *archive.Image, blob *archive.Blob) v1.Hash {
	if img == nil {
		return v1.Hash{}
	}
	for _, l := range img.Layers {
		if l.Digest == blob.Digest {
			return l.DiffID
		}
	}
	return v1.Hash{}
}

// A mount is a blob the registry holds in one repository that a push needs in another.
type mount struct {
	to   name.Repository
	from heldBlob
}

// mount puts the blobs the push needs from other repositories into the repositories it
// pushes to (a cross-repository mount, else a copy through this machine).
func (p *packing) mount(ctx context.Context) error {
	for _, m := range p.mounts {
		l, err := remote.Layer(m.from.repo.Digest(m.from.desc.Digest.String()), options(ctx, nil)...)
		if err == nil {
			err = remote.WriteLayer(m.to, l, options(ctx, nil)...)
		}
		if err != nil {
			return fmt.Errorf("mounting layer %s from %s into %s: %w", m.from.desc.Digest, m.from.repo, m.to, err)
		}
	}
	return nil
}

// holdsBlob says whether repo holds blob d (HEAD of the blob).
func (s *Store) holdsBlob(ctx context.Context, repo name.Repository, d v1.Hash) (bool, error) {
	layer, err := remote.Layer(repo.Digest(d.String()), options(ctx, nil)...)
	if err == nil {
		_, err = layer.Size()
	}
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking %s for layer %s: %w", repo, d, err)
	}
	return true, nil
}

// notFound says whether err is the registry's 404.
func notFound(err error) bool {
	var terr *transport.Error
	return errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound
}

// eachImage calls fn with every image tagged in repo, each image of an index included
// (nested indexes too); artifacts and the tags of cosign's scheme are skipped, and a
// repository that does not exist has no image.
func (s *Store) eachImage(ctx context.Context, repo name.Repository, fn func(v1.Image) error) error {
	tags, err := remote.List(repo, options(ctx, nil)...)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", repo, err)
	}
	for _, tag := range tags {
		if _, ok := archive.SchemeSubject(tag); ok {
			continue
		}
		desc, err := remote.Get(repo.Tag(tag), options(ctx, nil)...)
		switch {
		case err != nil:
		case desc.MediaType.IsIndex():
			var idx v1.ImageIndex
			if idx, err = desc.ImageIndex(); err == nil {
				err = archive.EachImage(idx, fn)
			}
		case archiveArtifact(desc) == nil:
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

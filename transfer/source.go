package transfer

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/archive"
)

// Source kinds for `save --from`.
const (
	FromDocker   = "docker"
	FromRegistry = "registry"
)

// ociRef is an image in an OCI layout directory: oci:DIR or oci:DIR:tag.
type ociRef struct{ dir, tag string }

func parseOCIRef(s string) (ociRef, bool) {
	rest, ok := strings.CutPrefix(s, "oci:")
	if !ok {
		return ociRef{}, false
	}
	dir, tag, _ := strings.Cut(rest, ":")
	return ociRef{dir: dir, tag: tag}, true
}

// registryOptions are the go-containerregistry options for a registry source or store:
// credentials from the default keychain (docker config, credential helpers).
func registryOptions(ctx context.Context, platform *v1.Platform) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if platform != nil {
		opts = append(opts, remote.WithPlatform(*platform))
	}
	return opts
}

// nameOptions: plain http is allowed for localhost and 127.0.0.1 by go-containerregistry
// itself, and for any registry with insecure.
func nameOptions(insecure bool) []name.Option {
	if insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// addRegistryImage adds a registry image to b: its original manifest, config and compressed
// layers, so digests stay the registry's.
func addRegistryImage(ctx context.Context, b *archive.Bundle, src archive.V1Source, ref string, opts SaveOptions) error {
	r, err := name.ParseReference(ref, nameOptions(opts.Insecure)...)
	if err != nil {
		return fmt.Errorf("%w: image %q: %w", ErrInvalidReference, ref, err)
	}
	platform := opts.platform()
	desc, err := remote.Get(r, registryOptions(ctx, &platform)...)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", ref, err)
	}
	tags := tagsOf(r)
	if desc.MediaType.IsIndex() && opts.AllPlatforms {
		idx, err := desc.ImageIndex()
		if err != nil {
			return fmt.Errorf("reading index %s: %w", ref, err)
		}
		_, err = b.AddIndex(idx, tags, platform, src)
		return err
	}
	img, err := desc.Image() // picks the platform from an index
	if err != nil {
		return fmt.Errorf("reading image %s: %w", ref, err)
	}
	_, err = b.AddImage(img, tags, src)
	return err
}

// addOCIImage adds an image of an OCI layout directory to b.
func addOCIImage(b *archive.Bundle, src archive.V1Source, ref ociRef, opts SaveOptions) error {
	lp, err := layout.FromPath(ref.dir)
	if err != nil {
		return fmt.Errorf("opening OCI layout %s: %w", ref.dir, err)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return fmt.Errorf("reading %s/index.json: %w", ref.dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("reading %s/index.json: %w", ref.dir, err)
	}
	desc, err := findInIndex(m.Manifests, ref)
	if err != nil {
		return err
	}
	tags := []string{}
	if tag := archive.RefTag(desc.Annotations); tag != "" {
		tags = append(tags, tag)
	}
	if desc.MediaType.IsIndex() {
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return err
		}
		if opts.AllPlatforms {
			_, err = b.AddIndex(child, tags, opts.platform(), src)
			return err
		}
		desc, err = archive.PickPlatform(child, opts.platform())
		if err != nil {
			return fmt.Errorf("%s: %w", ref.dir, err)
		}
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return fmt.Errorf("reading image %s from %s: %w", desc.Digest, ref.dir, err)
	}
	_, err = b.AddImage(img, tags, src)
	return err
}

// findInIndex finds the entry for ref.tag: the entry whose ref name annotation or image name
// matches it, or the only entry when no tag is given.
func findInIndex(descs []v1.Descriptor, ref ociRef) (v1.Descriptor, error) {
	if ref.tag == "" {
		if len(descs) != 1 {
			return v1.Descriptor{}, fmt.Errorf("OCI layout %s holds %d images: name one as oci:%s:TAG", ref.dir, len(descs), ref.dir)
		}
		return descs[0], nil
	}
	for _, d := range descs {
		if d.Annotations["org.opencontainers.image.ref.name"] == ref.tag || archive.RefTag(d.Annotations) == ref.tag ||
			d.Annotations["io.containerd.image.name"] == ref.tag {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("OCI layout %s has no image %q", ref.dir, ref.tag)
}

// tagsOf returns the tag a reference names, written the way docker's RepoTags are.
func tagsOf(r name.Reference) []string {
	if t, ok := r.(name.Tag); ok {
		return []string{archive.Familiar(t)}
	}
	return nil
}

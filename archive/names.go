package archive

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Caps on what one image may carry: docker stops at 125 layers (moby layer.maxLayerDepth),
// and no store is asked to take more; tags have no limit there, this one is generous.
const (
	maxTags   = 1000
	maxLayers = 125
)

// dockerRef is docker's reference grammar for a repository with a tag
// (github.com/distribution/reference regexp.go): lowercase path components joined by
// separators, an optional registry host and port, and a tag of [\w][\w.-]{0,127}.
var dockerRef = func() *regexp.Regexp {
	const (
		alnum     = `[a-z0-9]+`
		separator = `(?:[._]|__|[-]+)`
		component = alnum + `(?:` + separator + alnum + `)*`
		hostPart  = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		host      = `(?:` + hostPart + `(?:\.` + hostPart + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
		tag       = `[\w][\w.-]{0,127}`
	)
	return regexp.MustCompile(`^(?:` + host + `/)?` + component + `(?:/` + component + `)*:` + tag + `$`)
}()

// hex64 is a name docker refuses as a repository: it could be mistaken for an image ID.
var hex64 = regexp.MustCompile(`^[a-f0-9]{64}$`)

// nameMax is docker's cap on the length of a repository name.
const nameMax = 255

// ParseTag parses a RepoTag: a repository with an explicit tag, as docker load takes it
// ("busybox:1", "127.0.0.1:5000/app:2"), by docker's reference grammar.
func ParseTag(s string) (name.Tag, error) {
	var t name.Tag
	var err error
	switch {
	case !dockerRef.MatchString(s):
		err = fmt.Errorf("not a repository:tag reference by docker's grammar")
	case strings.LastIndex(s, ":") > nameMax:
		err = fmt.Errorf("the repository name is over %d bytes", nameMax)
	default:
		t, err = name.NewTag(s)
		// docker refuses the familiar form ("docker.io/library/<hex>:1" is "<hex>:1")
		if err == nil && hex64.MatchString(familiarRepo(t)) {
			err = fmt.Errorf("a 64-hex-digit repository name is refused by docker")
		}
	}
	if err != nil {
		return name.Tag{}, fmt.Errorf("invalid tag %s: %w", Quote(s), err)
	}
	return t, nil
}

// Familiar writes a tag in docker's familiar form, as docker images prints it and its
// RepoTags hold it: docker.io/library/x:1 is x:1, docker.io/u/x:1 is u/x:1, a tag of another
// registry is left whole.
func Familiar(t name.Tag) string { return familiarRepo(t) + ":" + t.TagStr() }

// familiarRepo is the repository of Familiar. As in docker (distribution/reference
// FamiliarName), library/ goes only before a single component: docker.io/library/u/x is
// library/u/x, not u/x. Where docker's form would read back as another registry's, docker.io/
// stays: docker.io/localhost/x, not localhost/x.
func familiarRepo(t name.Tag) string {
	if t.RegistryStr() != name.DefaultRegistry {
		return t.Context().Name()
	}
	repo := t.RepositoryStr()
	first, _, nested := strings.Cut(repo, "/")
	switch rest, official := strings.CutPrefix(repo, "library/"); {
	case official && !strings.Contains(rest, "/"):
		return rest
	case nested && (first == "localhost" || strings.ContainsAny(first, ".:")):
		return "docker.io/" + repo
	}
	return repo
}

// ociRefName is the grammar of org.opencontainers.image.ref.name (OCI image-spec
// annotations.md): components of letters and digits joined by -._:@+ or --, with /.
var ociRefName = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)

// checkAnnotations refuses the name annotations of an index entry that a store would
// refuse or that could reach a shell or a terminal.
func checkAnnotations(ann map[string]string) error {
	if n, ok := ann[annotationRefName]; ok && (len(n) > nameMax+128 || !ociRefName.MatchString(n)) {
		return fmt.Errorf("%w: ref name %s is not a valid OCI reference name", ErrInvalidMetadata, Quote(n))
	}
	if n, ok := ann[annotationImageName]; ok {
		// a tag or a digest: ggcr's grammar admits no space, quote or control character
		if _, err := name.ParseReference(n); err != nil || len(n) > nameMax+128 {
			return fmt.Errorf("%w: image name %s is not a valid reference", ErrInvalidMetadata, Quote(n))
		}
	}
	return nil
}

// DockerLoadable refuses what docker load would refuse only after it created something: an
// image with over 125 layers, or one without a rootfs of layers (HasRootFS).
func DockerLoadable(b *Bundle) error {
	for _, img := range b.Images {
		if err := img.checkLayers(); err != nil {
			return err
		}
	}
	return HasRootFS(b)
}

// checkLayers refuses an image of over maxLayers layers. Read, AddImage and AddIndex refuse
// them as they parse the metadata, before a sink commits anything; DockerLoadable refuses
// them in a bundle made otherwise.
func (img *Image) checkLayers() error {
	if len(img.Layers) > maxLayers {
		return fmt.Errorf("%w: image %s has %d layers; docker takes at most %d", ErrInvalidMetadata, img.ID(), len(img.Layers), maxLayers)
	}
	return nil
}

// HasRootFS refuses an image whose config has no rootfs of layers, which docker's load
// ("invalid image JSON, no RootFS key") and podman's and skopeo's docker-archive readers
// ("rootFS is not set") refuse; containerd and OCI layouts take it. An image of no layers,
// with a rootfs of none, every one of them takes.
func HasRootFS(b *Bundle) error {
	for _, img := range b.Images {
		if cfg := img.ConfigFile(); cfg != nil && cfg.RootFS.Type != "layers" {
			return fmt.Errorf("%w: image %s: the config's rootfs type is %s, docker and podman take only \"layers\"", ErrInvalidMetadata, img.ID(), Quote(cfg.RootFS.Type))
		}
	}
	return nil
}

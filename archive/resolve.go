package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/compress"
)

// dockerManifest is one entry of manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Annotations docker and containerd put on index.json entries.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// HostPlatform is the platform images are picked for by default.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// resolve turns what was read into a verified Bundle.
func (rd *reader) resolve(opts ReadOptions) (out *Bundle, err error) {
	defer func() {
		if rd.recs.err != nil { // what went wrong then is that a record read back as zeros
			out, err = nil, rd.recs.err
		}
	}()
	b := &Bundle{}
	manifestJSON, hasManifest := rd.meta["manifest.json"]
	indexJSON, hasIndex := rd.meta["index.json"]
	if !hasManifest && !hasIndex {
		return nil, fmt.Errorf("%w: no manifest.json or index.json", ErrNotBundle)
	}

	// Every image the index reaches, by manifest digest.
	indexed := map[v1.Hash]*Image{}
	rd.indexed = indexed
	if hasIndex {
		if err := json.Unmarshal(indexJSON, &b.Index); err != nil {
			return nil, fmt.Errorf("%w: index.json: %w", ErrInvalidMetadata, err)
		}
		if err := rd.topLevel(b, indexed); err != nil {
			return nil, err
		}
	}
	if hasManifest {
		err = rd.dockerImages(b, manifestJSON, indexed)
		if err == nil && hasIndex {
			err = rd.agree(b)
		}
		if repos, ok := rd.meta["repositories"]; ok && err == nil {
			err = agreeRepositories(b, repos)
		}
	} else {
		err = ociImages(b, indexed, opts)
	}
	if err != nil {
		return nil, err
	}
	for _, img := range b.Images {
		if len(img.RepoTags) > maxTags {
			return nil, fmt.Errorf("%w: image %s has %d tags, over the cap of %d", ErrInvalidMetadata, img.ID(), len(img.RepoTags), maxTags)
		}
	}
	if err := b.checkSubjects(rd.manifests(b)); err != nil {
		return nil, err
	}
	rd.unreferenced(b)
	if len(b.Images) == 0 && len(b.Artifacts) == 0 {
		return nil, fmt.Errorf("%w: it lists no images", ErrNotBundle)
	}
	if !hasIndex || len(b.Index.Manifests) == 0 {
		b.Index = synthesizeIndex(b.Images)
	}
	return b, nil
}

// manifests returns the digests of the images and indexes the bundle holds: what an
// artifact may refer to.
func (rd *reader) manifests(b *Bundle) map[v1.Hash]bool {
	out := map[v1.Hash]bool{}
	for h := range rd.indexed {
		out[h] = true
	}
	for h := range rd.walked {
		out[h] = true
	}
	for _, img := range b.Images {
		if img.Manifest != nil {
			out[img.Manifest.Digest] = true
		}
	}
	return out
}

// maxDepth caps how deep indexes nest: docker and containerd write two levels at most.
const maxDepth = 8

// topLevel resolves what index.json lists: each entry an image or an index, with valid
// name annotations, and no entry twice.
func (rd *reader) topLevel(b *Bundle, indexed map[v1.Hash]*Image) error {
	type key struct {
		digest v1.Hash
		name   string
	}
	seen := map[key]bool{}
	for i, desc := range b.Index.Manifests {
		if !desc.MediaType.IsIndex() && !desc.MediaType.IsImage() {
			return fmt.Errorf("%w: index.json entry %d: media type %s is neither an image nor an index", ErrInvalidMetadata, i, Quote(string(desc.MediaType)))
		}
		if err := checkAnnotations(desc.Annotations); err != nil {
			return fmt.Errorf("index.json entry %d: %w", i, err)
		}
		k := key{desc.Digest, desc.Annotations[annotationImageName] + "\x00" + desc.Annotations[annotationRefName]}
		if seen[k] {
			return fmt.Errorf("%w: index.json lists %s twice under the same name", ErrInvalidMetadata, desc.Digest)
		}
		seen[k] = true
	}
	_, err := rd.walk(b, b.Index.Manifests, indexed, 0)
	return err
}

// walk resolves every manifest the descriptors reach, recursing into nested indexes, and
// returns those images.
func (rd *reader) walk(b *Bundle, descs []v1.Descriptor, indexed map[v1.Hash]*Image, depth int) ([]*Image, error) {
	var reached []*Image
	for _, desc := range descs {
		switch {
		case desc.MediaType.IsIndex():
			blob, err := rd.metaBlob(b, desc, "index")
			if err != nil {
				return nil, err
			}
			if !rd.walked[desc.Digest] {
				if depth >= maxDepth {
					return nil, fmt.Errorf("%w: indexes nest over %d deep at %s", ErrInvalidMetadata, maxDepth, desc.Digest)
				}
				rd.walked[desc.Digest] = true
				var idx v1.IndexManifest
				if err := json.Unmarshal(blob.Data, &idx); err != nil {
					return nil, fmt.Errorf("%w: index %s: %w", ErrInvalidMetadata, desc.Digest, err)
				}
				listed := map[v1.Hash]bool{}
				for _, d := range idx.Manifests {
					if listed[d.Digest] {
						return nil, fmt.Errorf("%w: index %s lists %s twice", ErrInvalidMetadata, desc.Digest, d.Digest)
					}
					listed[d.Digest] = true
				}
				if rd.reaches[desc.Digest], err = rd.walk(b, idx.Manifests, indexed, depth+1); err != nil {
					return nil, err
				}
			}
			reached = append(reached, rd.reaches[desc.Digest]...)
		case desc.MediaType.IsImage():
			if rd.artifacts[desc.Digest] {
				b.tagArtifact(desc)
				continue
			}
			if indexed[desc.Digest] == nil {
				img, err := rd.ociImage(b, desc)
				if err != nil {
					return nil, err
				}
				if img == nil { // an artifact
					continue
				}
				indexed[desc.Digest] = img
			}
			if img := indexed[desc.Digest]; img != nil {
				reached = append(reached, img)
			}
		}
	}
	return reached, nil
}

// agree refuses a bundle whose index.json and manifest.json describe different images or
// tags: docker would load one set and an OCI store the other.
func (rd *reader) agree(b *Bundle) error {
	if len(b.Index.Manifests) == 0 {
		return nil
	}
	reaches := func(d v1.Descriptor, img *Image) bool {
		if d.MediaType.IsImage() {
			return sameImage(rd.indexed[d.Digest], img)
		}
		return slices.ContainsFunc(rd.reaches[d.Digest], func(o *Image) bool { return sameImage(o, img) })
	}
	for _, img := range b.Images {
		if !slices.ContainsFunc(b.Index.Manifests, func(d v1.Descriptor) bool { return reaches(d, img) }) {
			return fmt.Errorf("%w: manifest.json lists image %s, index.json does not", ErrInvalidMetadata, img.ID())
		}
		for _, tag := range img.RepoTags {
			if !slices.ContainsFunc(b.Index.Manifests, func(d v1.Descriptor) bool { return RefTag(d.Annotations) == tag && reaches(d, img) }) {
				return fmt.Errorf("%w: manifest.json tags image %s as %s, index.json %s", ErrInvalidMetadata, img.ID(), Quote(tag), rd.indexSays(b, tag))
			}
		}
	}
	for i, d := range b.Index.Manifests {
		if rd.artifacts[d.Digest] {
			continue
		}
		tag := RefTag(d.Annotations)
		if !slices.ContainsFunc(b.Images, func(img *Image) bool { return reaches(d, img) && (tag == "" || slices.Contains(img.RepoTags, tag)) }) {
			what := "manifest " + d.Digest.String()
			if tag != "" {
				what += " tagged " + Quote(tag)
			}
			return fmt.Errorf("%w: index.json entry %d lists %s, manifest.json does not", ErrInvalidMetadata, i, what)
		}
	}
	return nil
}

// sameImage reports whether a and b are one image: one config over the same layers.
func sameImage(a, b *Image) bool {
	return a != nil && a.ID() == b.ID() && sameBlobs(a.Layers, b.Layers)
}

// indexSays tells what index.json gives tag to.
func (rd *reader) indexSays(b *Bundle, tag string) string {
	for _, d := range b.Index.Manifests {
		if RefTag(d.Annotations) == tag {
			return "gives it to manifest " + d.Digest.String()
		}
	}
	return "does not have that tag"
}

// agreeRepositories refuses tags in docker's repositories file that manifest.json lacks.
func agreeRepositories(b *Bundle, data []byte) error {
	var repos map[string]map[string]string
	if err := json.Unmarshal(data, &repos); err != nil {
		return fmt.Errorf("%w: repositories: %w", ErrInvalidMetadata, err)
	}
	tags := map[string]bool{}
	for _, img := range b.Images {
		for _, t := range img.RepoTags {
			if parsed, err := ParseTag(t); err == nil {
				tags[Familiar(parsed)] = true
			}
		}
	}
	for repo, byTag := range repos {
		for tag := range byTag {
			t, err := ParseTag(repo + ":" + tag)
			if err != nil {
				return fmt.Errorf("%w: repositories: %w", ErrInvalidMetadata, err)
			}
			if !tags[Familiar(t)] {
				return fmt.Errorf("%w: repositories has tag %s, manifest.json does not", ErrInvalidMetadata, Quote(repo+":"+tag))
			}
		}
	}
	return nil
}

// unreferenced counts the entries nothing the bundle uses refers to, and names those of
// them whose names the reader kept: ignored, never passed on to a store.
func (rd *reader) unreferenced(b *Bundle) {
	used := map[NameKey]bool{}
	for _, blob := range b.Reachable() {
		if blob.Path != "" {
			used[KeyOf(blob.Path)] = true
		}
	}
	ignored := func(key NameKey) bool {
		switch r := rd.names[key]; r {
		case metaRef:
			return false
		case linkRef:
			return !rd.followed[key]
		case skippedRef:
			return true
		}
		return !used[key]
	}
	for key := range rd.names {
		if ignored(key) {
			b.Unreferenced++
		}
	}
	for _, name := range rd.sample {
		if ignored(KeyOf(name)) {
			b.UnreferencedNames = append(b.UnreferencedNames, name)
		}
	}
	sort.Strings(b.UnreferencedNames)
}

// ociImage resolves an image from its manifest descriptor.
func (rd *reader) ociImage(b *Bundle, desc v1.Descriptor) (*Image, error) {
	mblob, err := rd.metaBlob(b, desc, "manifest")
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(mblob.Data))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %w", ErrInvalidMetadata, desc.Digest, err)
	}
	if IsArtifact(desc, m) {
		return nil, rd.artifact(b, desc, m, mblob)
	}
	cblob, err := rd.metaBlob(b, m.Config, "config")
	if err != nil {
		return nil, err
	}
	img := &Image{Manifest: mblob, Config: cblob, Platform: desc.Platform}
	for _, ld := range m.Layers {
		blob := rd.digestBlob(b, ld.Digest)
		if blob == nil {
			blob = b.AddBlob(&Blob{Digest: ld.Digest, Size: ld.Size, Missing: true})
		}
		if !blob.Present() && rd.isLink(blobPath(ld.Digest)) {
			return nil, rd.missing(ld.Digest, "layer")
		}
		if blob.Present() && blob.Size != ld.Size {
			return nil, fmt.Errorf("%w: layer %s is %d bytes, manifest %s says %d", ErrDigestMismatch, blob, blob.Size, desc.Digest, ld.Size)
		}
		img.Layers = append(img.Layers, &Layer{Blob: blob, MediaType: ld.MediaType})
	}
	return img, img.verify()
}

// artifact records the artifact desc names, whose manifest is m: its config and layers are
// blobs of the bundle, or, in a thin bundle, expected at the destination.
func (rd *reader) artifact(b *Bundle, desc v1.Descriptor, m *v1.Manifest, mblob *Blob) error {
	rd.artifacts[desc.Digest] = true
	a, err := newArtifact(desc, m, mblob, func(d v1.Descriptor) (*Blob, error) {
		blob := rd.digestBlob(b, d.Digest)
		switch {
		case blob == nil && rd.isLink(blobPath(d.Digest)):
			return nil, rd.missing(d.Digest, "blob")
		case blob == nil:
			return b.AddBlob(&Blob{Digest: d.Digest, Size: d.Size, Missing: true}), nil
		case blob.Present() && blob.Size != d.Size:
			return nil, fmt.Errorf("%w: blob %s is %d bytes, its descriptor says %d", ErrDigestMismatch, blob, blob.Size, d.Size)
		}
		return blob, nil
	})
	if err != nil {
		return err
	}
	b.addArtifact(a)
	return nil
}

// metaBlob returns the blob a descriptor names, which must be present and kept in memory.
func (rd *reader) metaBlob(b *Bundle, desc v1.Descriptor, what string) (*Blob, error) {
	blob := rd.digestBlob(b, desc.Digest)
	if blob == nil || !blob.Present() {
		return nil, rd.missing(desc.Digest, what)
	}
	if blob.Size != desc.Size {
		return nil, fmt.Errorf("%w: %s %s is %d bytes, its descriptor says %d", ErrDigestMismatch, what, blob, blob.Size, desc.Size)
	}
	return blob, keptJSON(blob, what)
}

// keptJSON says why a manifest or config is not kept in memory, if it is not.
func keptJSON(blob *Blob, what string) error {
	switch {
	case blob.unkept:
		return fmt.Errorf("%w: %s %s: the JSON entries before it add up to over %d bytes", ErrTooLarge, what, blob, keptMax)
	case blob.Data == nil:
		return fmt.Errorf("%w: %s %s is not JSON or over %d bytes", ErrInvalidMetadata, what, blob, metaMax)
	}
	return nil
}

// missing explains a blob the bundle lacks: a link where it would be is refused, as links
// in manifest.json are.
func (rd *reader) missing(h v1.Hash, what string) error {
	if p := blobPath(h); rd.isLink(p) {
		return fmt.Errorf("%w: %s %s is a link", ErrUnsafeEntry, what, p)
	}
	return fmt.Errorf("%w: %s %s", ErrMissingBlob, what, h)
}

// verify checks the number of layers, parses the config and checks every present layer
// against its diffID.
func (img *Image) verify() error {
	if err := img.checkLayers(); err != nil {
		return err
	}
	cfg := img.Config.config // parsed once however many images share it
	if cfg == nil {
		var err error
		if cfg, err = v1.ParseConfigFile(bytes.NewReader(img.Config.Data)); err != nil {
			return fmt.Errorf("%w: config %s: %w", ErrInvalidMetadata, img.Config, err)
		}
		img.Config.config = cfg
	}
	img.config = cfg
	if img.Platform == nil {
		img.Platform = cfg.Platform()
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(img.Layers) {
		return fmt.Errorf("%w: image %s has %d layers but its config lists %d diffIDs", ErrInvalidMetadata, img.ID(), len(img.Layers), len(diffIDs))
	}
	for i, l := range img.Layers {
		l.DiffID = diffIDs[i]
		if l.Path == "" {
			continue // not read from a bundle: missing here, or verified when copied
		}
		if l.diffErr != nil {
			return fmt.Errorf("%w: layer %s: decompressing: %w", ErrDiffIDMismatch, l.Blob, l.diffErr)
		}
		if l.diffID != l.DiffID {
			return fmt.Errorf("%w: layer %s decompresses to %s, config %s says %s", ErrDiffIDMismatch, l.Blob, l.diffID, img.ID(), l.DiffID)
		}
	}
	for _, l := range img.Layers {
		if l.MediaType == "" {
			l.MediaType = layerMediaType(l.codec)
		}
	}
	return nil
}

func layerMediaType(c compress.Codec) types.MediaType {
	switch c {
	case compress.Gzip:
		return types.OCILayer
	case compress.Zstd:
		return types.OCILayerZStd
	}
	return types.OCIUncompressedLayer
}

// dockerImages resolves the images of manifest.json, reusing those the index describes.
func (rd *reader) dockerImages(b *Bundle, data []byte, indexed map[v1.Hash]*Image) error {
	var entries []dockerManifest
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("%w: manifest.json: %w", ErrInvalidMetadata, err)
	}
	byConfig := map[v1.Hash]*Image{}
	for _, img := range indexed {
		byConfig[img.ID()] = img
	}
	for i, e := range entries {
		img, err := rd.dockerImage(b, e, byConfig)
		if err != nil {
			return fmt.Errorf("manifest.json entry %d: %w", i, err)
		}
		tags, err := validTags(e.RepoTags)
		if err != nil {
			return fmt.Errorf("manifest.json entry %d: %w", i, err)
		}
		// An image listed twice is one image with the tags of both entries.
		if !slices.Contains(b.Images, img) {
			b.Images = append(b.Images, img)
		}
		for _, tag := range tags {
			if !slices.Contains(img.RepoTags, tag) {
				img.RepoTags = append(img.RepoTags, tag)
			}
		}
	}
	return nil
}

func (rd *reader) dockerImage(b *Bundle, e dockerManifest, byConfig map[v1.Hash]*Image) (*Image, error) {
	cblob, err := rd.file(b, e.Config)
	if err == nil {
		err = keptJSON(cblob, "config")
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}

	layers := make([]*Layer, len(e.Layers))
	for i, p := range e.Layers {
		blob, err := rd.file(b, p)
		if err != nil {
			m := digestName.FindStringSubmatch(p)
			if m == nil || rd.isLink(p) {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			// A thin bundle: the destination is expected to hold this layer.
			h := v1.Hash{Algorithm: "sha256", Hex: m[1]}
			if blob = rd.digestBlob(b, h); blob == nil {
				blob = b.AddBlob(&Blob{Digest: h, Missing: true})
			}
		}
		layers[i] = &Layer{Blob: blob}
	}
	if img := byConfig[cblob.Digest]; img != nil && sameBlobs(img.Layers, layers) {
		return img, nil
	}
	img := &Image{Config: cblob, Layers: layers}
	if err := img.verify(); err != nil {
		return nil, err
	}
	if mblob := synthesizeManifest(img); mblob != nil {
		img.Manifest = b.AddBlob(mblob)
	}
	byConfig[img.ID()] = img
	return img, nil
}

// file returns the blob of the data entry at a path named by metadata, directly or through
// one link to a data entry.
func (rd *reader) file(b *Bundle, p string) (*Blob, error) {
	clean, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	key := KeyOf(clean)
	if target, ok := rd.links[key]; ok {
		rd.followed[key] = true
		blob := rd.blob(b, target) // entries have clean names inside the archive
		if blob == nil {
			return nil, fmt.Errorf("%w: %s is a link to %s, which is not a file of the bundle", ErrUnsafeEntry, Quote(p), Quote(target))
		}
		if m := digestName.FindStringSubmatch(clean); m != nil && m[1] != blob.Digest.Hex {
			return nil, fmt.Errorf("%w: %s is a link to %s, which hashes to %s", ErrDigestMismatch, Quote(p), Quote(target), blob.Digest)
		}
		return blob, nil
	}
	blob := rd.blob(b, clean)
	if blob == nil {
		return nil, fmt.Errorf("%w: %s", ErrMissingBlob, Quote(p))
	}
	return blob, nil
}

// blob returns the blob of the data entry called name, recorded in b (which keeps the first
// blob of each digest); nil when the bundle has no data entry of that name.
func (rd *reader) blob(b *Bundle, name string) *Blob {
	i, ok := rd.names[KeyOf(name)]
	if !ok || i >= maxRecords {
		return nil
	}
	rec := rd.recs.get(i)
	blob := &Blob{Digest: sha256Of(rec.digest), Size: rec.size, Path: name, Data: rd.json[i], codec: rec.codec, unkept: rec.unkept}
	blob.diffID, blob.diffErr = blob.Digest, rd.diffErrs[i]
	if rec.codec != compress.None {
		blob.diffID = sha256Of(rec.diffID)
	}
	return b.AddBlob(blob)
}

// digestBlob returns the blob with digest h: the one b has, else the bundle's entry
// blobs/sha256/<hex>, where index.json and manifests find blobs; nil when neither is there.
func (rd *reader) digestBlob(b *Bundle, h v1.Hash) *Blob {
	if blob, ok := b.blobs[h]; ok {
		return blob
	}
	if blob := rd.blob(b, blobPath(h)); blob != nil && blob.Digest == h {
		return blob
	}
	return nil
}

// isLink reports whether the archive has a link entry at p.
func (rd *reader) isLink(p string) bool {
	_, ok := rd.links[KeyOf(p)]
	return ok
}

func sameBlobs(a, b []*Layer) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Digest != b[i].Digest {
			return false
		}
	}
	return true
}

// validTags checks RepoTags the way docker load does.
func validTags(tags []string) ([]string, error) {
	if len(tags) > maxTags {
		return nil, fmt.Errorf("%w: %d tags, over the cap of %d", ErrInvalidMetadata, len(tags), maxTags)
	}
	for _, t := range tags {
		if _, err := ParseTag(t); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
		}
	}
	return tags, nil
}

// ociImages picks the images of an OCI archive: one per top-level entry of index.json, the
// platform's image from nested indexes, tags from the annotations docker and skopeo write.
func ociImages(b *Bundle, indexed map[v1.Hash]*Image, opts ReadOptions) error {
	want := HostPlatform()
	if opts.Platform != nil {
		want = *opts.Platform
	}
	seen := map[*Image]bool{}
	for _, desc := range b.Index.Manifests {
		img, err := pick(b, desc, indexed, want)
		if err != nil {
			return err
		}
		if img == nil {
			continue
		}
		if tag := RefTag(desc.Annotations); tag != "" {
			img.RepoTags = append(img.RepoTags, tag)
		}
		if !seen[img] {
			seen[img] = true
			b.Images = append(b.Images, img)
		}
	}
	return nil
}

// pick returns the image a top-level index entry stands for on platform want.
func pick(b *Bundle, desc v1.Descriptor, indexed map[v1.Hash]*Image, want v1.Platform) (*Image, error) {
	switch {
	case desc.MediaType.IsImage():
		return indexed[desc.Digest], nil
	case desc.MediaType.IsIndex():
		var idx v1.IndexManifest
		json.Unmarshal(b.blobs[desc.Digest].Data, &idx) //nolint:errcheck // parsed by walk
		child, err := matchPlatform(idx.Manifests, want)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		return indexed[child.Digest], nil
	}
	return nil, nil
}

// EachImage calls fn with every image idx reaches, nested indexes included.
func EachImage(idx v1.ImageIndex, fn func(v1.Image) error) error {
	m, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range m.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err == nil {
				err = EachImage(child, fn)
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

// PickPlatform returns the descriptor of idx's image for platform want.
func PickPlatform(idx v1.ImageIndex, want v1.Platform) (v1.Descriptor, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return matchPlatform(m.Manifests, want)
}

func matchPlatform(descs []v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	for _, d := range descs {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.Satisfies(want) {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%w: no image for %s", ErrMissingBlob, want.String())
}

// RefTag returns the tag an index entry's annotations give, or "".
func RefTag(ann map[string]string) string {
	if ArtifactTag(ann) != "" {
		return "" // an artifact's tag scheme tag, in its subject's repositories
	}
	if n := ann[annotationImageName]; n != "" {
		if t, err := name.NewTag(n); err == nil {
			return Familiar(t)
		}
	}
	if n := ann[annotationRefName]; n != "" {
		if t, err := ParseTag(n); err == nil {
			return Familiar(t)
		}
	}
	return ""
}

// fullName writes a tag the way containerd's image names do: docker.io, not index.docker.io.
func fullName(t name.Tag) string {
	if t.RegistryStr() == name.DefaultRegistry {
		return "docker.io/" + t.RepositoryStr() + ":" + t.TagStr()
	}
	return t.Name()
}

// synthesizeManifest writes an OCI manifest over an image's layers as they are, the way
// docker 25 does for its own images; nil when a layer's size is unknown.
func synthesizeManifest(img *Image) *Blob {
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: img.Config.Digest, Size: img.Config.Size},
	}
	for _, l := range img.Layers {
		if !l.Present() {
			return nil
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
	}
	data, _ := json.Marshal(m)
	return &Blob{Digest: sha256Hash(data), Size: int64(len(data)), Data: data}
}

// synthesizeIndex writes index.json for images that have manifests.
func synthesizeIndex(images []*Image) v1.IndexManifest {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, img := range images {
		if img.Manifest != nil {
			desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: img.Manifest.Digest, Size: img.Manifest.Size, Platform: img.Platform}
			idx.Manifests = append(idx.Manifests, tagged(desc, img.RepoTags)...)
		}
	}
	return idx
}

// tagged returns desc once per tag, with the annotations docker 25 writes, or once untagged.
func tagged(desc v1.Descriptor, tags []string) []v1.Descriptor {
	if len(tags) == 0 {
		return []v1.Descriptor{desc}
	}
	var out []v1.Descriptor
	for _, tag := range tags {
		t, _ := ParseTag(tag)
		d := desc
		d.Annotations = map[string]string{annotationImageName: fullName(t), annotationRefName: t.TagStr()}
		out = append(out, d)
	}
	return out
}

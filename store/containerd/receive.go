package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store"
)

const (
	// leaseTime is how long what a receive wrote is kept unnamed: long enough for a cut
	// transfer to be resumed from the ingests it left.
	leaseTime = 24 * time.Hour
	// chunk is the size of the pieces written into an ingest: each is one request and one
	// answer, and containerd's writer sends at most 8 MiB a message. Over SSH the size
	// matters: a 256 MiB blob went at 10 MB/s in pieces of 1 MiB, 22 MB/s in 4 MiB, 37 MB/s
	// in 8 MiB (loopback sshd; HTTP/2 flow control, not the round trips: sending pieces
	// without waiting for their answers changed nothing).
	chunk = 8 << 20
	// refPrefix starts the ingest refs ferry writes under, followed by the blob's digest:
	// the same blob always resumes the same ingest.
	refPrefix = "ferry-"
)

// Receive returns a sink that writes the blobs a bundle carries into the content store,
// each resuming what an earlier, cut transfer left of it, and on Commit checks that every
// blob the images need is there (or, for a layer, unpacked), unpacks the images and names
// them. A lease holds what it wrote until then; Abort releases what was committed and keeps
// the ingests, for the next try to resume.
func (s *Store) Receive(ctx context.Context) (store.Receiver, error) {
	l, err := s.client.LeasesService().Create(ctx, leases.WithRandomID(), leases.WithExpiration(leaseTime),
		leases.WithLabel("ferry", "receive"))
	if err != nil {
		return nil, fmt.Errorf("%s: creating a lease: %w", s, err)
	}
	return &receiver{s: s, cs: s.client.ContentStore(), lease: l, written: map[string]digest.Digest{}}, nil
}

type receiver struct {
	s       *Store
	cs      content.Store
	lease   leases.Lease
	written map[string]digest.Digest // entry name → the digest committed
	resumed int64
	buf     []byte
	loaded  []store.Loaded
}

func (r *receiver) Loaded() []store.Loaded { return r.loaded }

// Resumed is how many bytes of the entries were already in ingests: read and dropped here,
// never sent.
func (r *receiver) Resumed() int64 { return r.resumed }

var blobName = regexp.MustCompile(`^blobs/sha256/([a-f0-9]{64})$`)

// Entry writes one blob into the content store through an ingest named after its digest,
// skipping what the ingest already holds, and commits it: containerd checks its size and
// digest. An entry not named by its digest (a legacy layer.tar) is committed under the
// digest it hashes to, which Commit checks against the bundle's.
func (r *receiver) Entry(ctx context.Context, e archive.Entry, rd io.Reader) error {
	ctx = leases.WithLease(ctx, r.lease.ID)
	var expected digest.Digest
	ref := refPrefix + e.Name
	if m := blobName.FindStringSubmatch(e.Name); m != nil {
		expected = digest.NewDigestFromEncoded(digest.SHA256, m[1])
		ref = refPrefix + m[1]
	}
	w, err := content.OpenWriter(ctx, r.cs, content.WithRef(ref), content.WithDescriptor(ocispec.Descriptor{Digest: expected, Size: e.Size}))
	if errdefs.IsAlreadyExists(err) { // another transfer committed it meanwhile
		r.written[e.Name] = expected
		_, err = io.Copy(io.Discard, rd)
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: opening ingest %s: %w", r.s, ref, err)
	}
	defer w.Close()
	st, err := w.Status()
	if err != nil {
		return fmt.Errorf("%s: ingest %s: %w", r.s, ref, err)
	}
	if off := st.Offset; off > 0 && off <= e.Size {
		if _, err := io.CopyN(io.Discard, rd, off); err != nil {
			return err
		}
		r.resumed += off
	} else if off != 0 {
		if err := w.Truncate(0); err != nil {
			return err
		}
	}
	if err := r.copy(w, rd); err != nil {
		return fmt.Errorf("%s: writing %s: %w", r.s, e.Name, err)
	}
	err = w.Commit(ctx, e.Size, expected)
	switch {
	case errdefs.IsAlreadyExists(err):
	case errdefs.IsFailedPrecondition(err):
		// The size or digest is wrong: drop the ingest, or the next try would resume it.
		r.cs.Abort(ctx, ref)
		return fmt.Errorf("%w: %s: containerd refused it: %w", archive.ErrDigestMismatch, e.Name, err)
	case err != nil:
		return fmt.Errorf("%s: committing %s: %w", r.s, e.Name, err)
	}
	if expected == "" {
		expected = w.Digest()
	}
	r.written[e.Name] = expected
	return nil
}

// copy writes rd into w in pieces of chunk bytes: one request each.
func (r *receiver) copy(w io.Writer, rd io.Reader) error {
	if r.buf == nil {
		r.buf = make([]byte, chunk)
	}
	for {
		n, err := io.ReadFull(rd, r.buf)
		if n > 0 {
			if _, werr := w.Write(r.buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil // a short blob fails its commit
		}
		if err != nil {
			return err
		}
	}
}

// Commit makes sure every blob the bundle's images need is in the content store (a layer
// may be there unpacked instead), labels manifests and indexes with the references
// containerd's garbage collector follows, unpacks every image into the snapshotter, and
// only then names the images. A failed unpack names nothing.
func (r *receiver) Commit(ctx context.Context, b *archive.Bundle) error {
	ctx = leases.WithLease(ctx, r.lease.ID)
	if err := r.complete(ctx, b); err != nil {
		return err
	}
	targets, err := r.label(ctx, b)
	if err != nil {
		return err
	}
	for _, img := range b.Images {
		target := targets[img.Manifest.Digest]
		ci := client.NewImageWithPlatform(r.s.client, images.Image{Name: target.Digest.String(), Target: target}, platforms.All)
		if err := ci.Unpack(ctx, r.s.snapshotter); err != nil {
			return fmt.Errorf("%s: unpacking %s into %s: %w", r.s, imageName(img), r.s.snapshotter, err)
		}
	}
	for _, n := range names(b, targets, r.s.namespace) {
		if err := r.name(ctx, n); err != nil {
			return err
		}
	}
	r.loaded = store.LoadedImages(b)
	// The images now hold what the lease held. A lease left behind expires.
	r.s.client.LeasesService().Delete(ctx, r.lease)
	return nil
}

// complete checks that every blob of b is in the content store, or written now from
// memory, or, for a layer left out, unpacked.
func (r *receiver) complete(ctx context.Context, b *archive.Bundle) error {
	chains := map[v1.Hash]v1.Hash{} // a layer's blob → its chain ID in some image
	for _, img := range b.Images {
		ids := archive.ChainIDs(img.DiffIDs())
		for i, l := range img.Layers {
			chains[l.Digest] = ids[i]
		}
	}
	for _, blob := range b.Reachable() {
		d := digest.Digest(blob.Digest.String())
		switch got, ok := r.written[blob.Path]; {
		case blob.Present() && ok:
			if got != d {
				return fmt.Errorf("%w: %s: content hashes to %s", archive.ErrDigestMismatch, blob, got)
			}
		case blob.Present() && blob.Data != nil:
			desc := ocispec.Descriptor{Digest: d, Size: blob.Size}
			if err := content.WriteBlob(ctx, r.cs, refPrefix+blob.Digest.Hex, bytes.NewReader(blob.Data), desc); err != nil {
				return fmt.Errorf("%s: writing %s: %w", r.s, blob, err)
			}
		case blob.Present():
			return fmt.Errorf("%w: %s was never written", archive.ErrMissingBlob, blob)
		default:
			_, err := r.cs.Info(ctx, d)
			if err == nil {
				continue
			}
			if !notFound(err) {
				return fmt.Errorf("%s: %w", r.s, err)
			}
			chain, isLayer := chains[blob.Digest]
			if isLayer {
				if _, err := r.s.client.SnapshotService(r.s.snapshotter).Stat(ctx, chain.String()); err == nil {
					continue
				}
			}
			return fmt.Errorf("%w: the bundle leaves out %s, which %s does not hold: send or load the images it comes from first",
				archive.ErrMissingBlob, blob.Digest, r.s)
		}
	}
	return nil
}

// label puts on each manifest and index the labels that keep what it names from
// containerd's garbage collector, and returns the descriptor of every manifest and index.
func (r *receiver) label(ctx context.Context, b *archive.Bundle) (map[v1.Hash]ocispec.Descriptor, error) {
	targets := map[v1.Hash]ocispec.Descriptor{}
	for _, d := range b.Index.Manifests {
		targets[d.Digest] = ocispec.Descriptor{MediaType: string(d.MediaType), Digest: digest.Digest(d.Digest.String()), Size: d.Size}
	}
	for _, img := range b.Images {
		refs := []string{img.Config.Digest.String()}
		for _, l := range img.Layers {
			refs = append(refs, l.Digest.String())
		}
		if err := r.update(ctx, img.Manifest.Digest, "config", refs[:1], "l", refs[1:]); err != nil {
			return nil, err
		}
		if _, ok := targets[img.Manifest.Digest]; !ok {
			mt, err := r.mediaType(ctx, img.Manifest)
			if err != nil {
				return nil, err
			}
			targets[img.Manifest.Digest] = ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(img.Manifest.Digest.String()), Size: img.Manifest.Size}
		}
	}
	for _, blob := range b.Reachable() {
		if blob.Data == nil {
			continue
		}
		var idx v1.IndexManifest
		if json.Unmarshal(blob.Data, &idx) != nil || len(idx.Manifests) == 0 {
			continue
		}
		var refs []string
		for _, m := range idx.Manifests {
			refs = append(refs, m.Digest.String())
		}
		if err := r.update(ctx, blob.Digest, "m", refs); err != nil {
			return nil, err
		}
	}
	return targets, nil
}

// update sets labels containerd.io/gc.ref.content.KIND[.i] on blob d: pairs of a kind and
// the digests it names ("config" takes one, unnumbered).
func (r *receiver) update(ctx context.Context, d v1.Hash, pairs ...any) error {
	info := content.Info{Digest: digest.Digest(d.String()), Labels: map[string]string{}}
	var paths []string
	for i := 0; i < len(pairs); i += 2 {
		kind, refs := pairs[i].(string), pairs[i+1].([]string)
		for j, ref := range refs {
			key := "containerd.io/gc.ref.content." + kind
			if kind != "config" {
				key += "." + strconv.Itoa(j)
			}
			info.Labels[key] = ref
			paths = append(paths, "labels."+key)
		}
	}
	if _, err := r.cs.Update(ctx, info, paths...); err != nil {
		return fmt.Errorf("%s: labelling %s: %w", r.s, d, err)
	}
	return nil
}

// mediaType is a manifest's media type, as it says, from the bundle or the content store.
func (r *receiver) mediaType(ctx context.Context, blob *archive.Blob) (string, error) {
	data := blob.Data
	if data == nil {
		var err error
		data, err = content.ReadBlob(ctx, r.cs, ocispec.Descriptor{Digest: digest.Digest(blob.Digest.String()), Size: blob.Size})
		if err != nil {
			return "", fmt.Errorf("%s: reading manifest %s: %w", r.s, blob.Digest, err)
		}
	}
	var m struct{ MediaType string }
	if err := json.Unmarshal(data, &m); err != nil {
		return "", fmt.Errorf("%w: manifest %s: %w", archive.ErrInvalidMetadata, blob.Digest, err)
	}
	if m.MediaType == "" {
		return string(types.OCIManifestSchema1), nil
	}
	return m.MediaType, nil
}

// name creates image n, or points it at its new target.
func (r *receiver) name(ctx context.Context, n images.Image) error {
	is := r.s.client.ImageService()
	_, err := is.Create(ctx, n)
	if errdefs.IsAlreadyExists(err) {
		_, err = is.Update(ctx, n, "target")
	}
	if err != nil {
		return fmt.Errorf("%s: naming %s: %w", r.s, n.Name, err)
	}
	return nil
}

// names are the images of b as containerd names them: each tag's full name
// (docker.io/library/app:1) and what it points at; an untagged image by its digest. In the
// namespace of Kubernetes, each tagged image is named by its repository and digest too
// (docker.io/library/app@sha256:…), as the CRI names what it pulls: a pod whose image is
// pinned by digest finds it.
func names(b *archive.Bundle, targets map[v1.Hash]ocispec.Descriptor, namespace string) []images.Image {
	var out []images.Image
	name := func(tag string, target ocispec.Descriptor) {
		n := FullName(tag)
		out = append(out, images.Image{Name: n, Target: target})
		if namespace == CRINamespace {
			repo := n[:strings.LastIndex(n, ":")] // n is REPO:TAG, and a tag holds no ":"
			pinned := images.Image{Name: repo + "@" + target.Digest.String(), Target: target}
			if !slices.ContainsFunc(out, func(i images.Image) bool { return i.Name == pinned.Name }) {
				out = append(out, pinned)
			}
		}
	}
	named := map[v1.Hash]bool{}
	for _, d := range b.Index.Manifests {
		tag := archive.RefTag(d.Annotations)
		if FullName(tag) == "" {
			continue
		}
		name(tag, targets[d.Digest])
		named[d.Digest] = true
	}
	for _, img := range b.Images {
		if named[img.Manifest.Digest] {
			continue
		}
		for _, tag := range img.RepoTags {
			name(tag, targets[img.Manifest.Digest])
		}
		if len(img.RepoTags) == 0 {
			out = append(out, images.Image{Name: "ferry-untagged@" + img.Manifest.Digest.String(), Target: targets[img.Manifest.Digest]})
		}
	}
	return out
}

// Abort releases what was committed under the lease, unnamed, and keeps the ingests: the
// next transfer of the same blobs resumes them.
func (r *receiver) Abort(error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lm := r.s.client.LeasesService()
	res, err := lm.ListResources(ctx, r.lease)
	if err != nil {
		return // the connection is gone: the lease expires
	}
	ingests := 0
	for _, rs := range res {
		if rs.Type == "ingests" {
			ingests++
			continue
		}
		lm.DeleteResource(ctx, r.lease, rs)
	}
	if ingests == 0 {
		lm.Delete(ctx, r.lease)
	}
}

func imageName(img *archive.Image) string {
	if len(img.RepoTags) > 0 {
		return img.RepoTags[0]
	}
	return img.ID().String()
}

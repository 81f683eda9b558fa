package containerd

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// labelUncompressed is the label containerd puts on a compressed layer blob: its diffID.
const labelUncompressed = "containerd.io/uncompressed"

// maxListed bounds what a listing of containerd's may hold: blobs of its content store,
// snapshots of its snapshotter. A listing past it is refused.
const maxListed = 200_000

// counter counts a listing's entries, refusing one past maxListed.
type counter struct {
	what string // "blobs of the content store"
	n    int
}

func (c *counter) next() error {
	if c.n++; c.n > maxListed {
		return fmt.Errorf("containerd lists over %d %s, more than ferry takes stock of", maxListed, c.what)
	}
	return nil
}

// Inventory lists the blobs of the namespace's content store (with the diffIDs their
// labels give), and the layers the snapshotter holds unpacked, by chain ID (the names
// containerd commits them under). A layer held either way need not be sent.
func (s *Store) Inventory(ctx context.Context) (*dedupe.Inventory, error) {
	var blobs, diffIDs, chains []v1.Hash
	listed := &counter{what: "blobs of the content store"}
	err := s.client.ContentStore().Walk(ctx, func(info content.Info) error {
		if err := listed.next(); err != nil {
			return err
		}
		if h, err := v1.NewHash(info.Digest.String()); err == nil {
			blobs = append(blobs, h)
		}
		if h, err := v1.NewHash(info.Labels[labelUncompressed]); err == nil {
			diffIDs = append(diffIDs, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the content store: %w", err)
	}
	listed = &counter{what: "snapshots of " + s.snapshotter}
	err = s.client.SnapshotService(s.snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if err := listed.next(); err != nil {
			return err
		}
		if info.Kind != snapshots.KindCommitted {
			return nil
		}
		if h, err := v1.NewHash(info.Name); err == nil {
			chains = append(chains, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing snapshotter %s: %w", s.snapshotter, err)
	}
	inv := dedupe.NewInventory(dedupe.StoreContainerd)
	inv.Add(blobs, diffIDs, chains)
	return inv, nil
}

// LayerBlobs finds, among the blobs the content store labels with their uncompressed
// digest, one for each of diffIDs that it holds: the layer's tar itself, or gzip-compressed
// (its first bytes say). Of several, the one of the lowest digest, so every send picks the
// same.
func (s *Store) LayerBlobs(ctx context.Context, diffIDs []v1.Hash) (map[v1.Hash]store.LayerBlob, error) {
	want := map[string]v1.Hash{}
	for _, d := range diffIDs {
		want[d.String()] = d
	}
	found := map[v1.Hash][]content.Info{}
	cs := s.client.ContentStore()
	listed := &counter{what: "blobs of the content store"}
	err := cs.Walk(ctx, func(info content.Info) error {
		if err := listed.next(); err != nil {
			return err
		}
		if d, ok := want[info.Labels[labelUncompressed]]; ok {
			found[d] = append(found[d], info)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listing the content store: %w", s, err)
	}
	out := map[v1.Hash]store.LayerBlob{}
	for d, infos := range found {
		slices.SortFunc(infos, func(a, b content.Info) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
		for _, info := range infos {
			h, err := v1.NewHash(info.Digest.String())
			if err != nil {
				continue
			}
			if h == d {
				out[d] = store.LayerBlob{Digest: h, Size: info.Size}
				break
			}
			gz, err := s.isGzip(ctx, info)
			if err != nil {
				return nil, err
			}
			if gz {
				out[d] = store.LayerBlob{Digest: h, Size: info.Size, Gzip: true}
				break
			}
		}
	}
	return out, nil
}

// isGzip reports whether a blob starts as gzip does.
func (s *Store) isGzip(ctx context.Context, info content.Info) (bool, error) {
	ra, err := s.client.ContentStore().ReaderAt(ctx, ocispec.Descriptor{Digest: info.Digest, Size: info.Size})
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: reading %s: %w", s, info.Digest, err)
	}
	defer ra.Close()
	head := make([]byte, 2)
	if n, _ := ra.ReadAt(head, 0); n < 2 {
		return false, nil
	}
	return head[0] == 0x1f && head[1] == 0x8b, nil
}

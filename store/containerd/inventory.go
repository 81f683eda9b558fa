package containerd

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/dedupe"
)

// labelUncompressed is the label containerd puts on a compressed layer blob: its diffID.
const labelUncompressed = "containerd.io/uncompressed"

// Inventory lists the blobs of the namespace's content store (with the diffIDs their
// labels give), and the layers the snapshotter holds unpacked, by chain ID (the names
// containerd commits them under). A layer held either way need not be sent.
func (s *Store) Inventory(ctx context.Context) (*dedupe.Inventory, error) {
	var blobs, diffIDs, chains []v1.Hash
	err := s.client.ContentStore().Walk(ctx, func(info content.Info) error {
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
	err = s.client.SnapshotService(s.snapshotter).Walk(ctx, func(_ context.Context, info snapshots.Info) error {
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

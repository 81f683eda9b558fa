package mem

import (
	"context"
	"io"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// A Daemon is a store that loads docker-archive streams, as docker does: a stream cut short
// loads nothing. On its classic store it keeps layers by chain and takes thin bundles whose
// left-out layers it holds (a store.Stepper); with Complete, complete images only. As a
// source it saves the images it was seeded with as one stream (a store.Saver).
type Daemon struct {
	*Store
	complete bool
	zstd     bool
}

// NewDaemon makes an empty daemon named name: on the classic store, or, with complete,
// taking complete images only; zstd says whether its load takes zstd.
func NewDaemon(name string, complete, zstd bool) *Daemon {
	return &Daemon{Store: New(name), complete: complete, zstd: zstd}
}

func (d *Daemon) Inventory(context.Context) (*dedupe.Inventory, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults.Inventory != nil {
		return nil, d.faults.Inventory
	}
	inv := dedupe.NewInventory(dedupe.StoreDocker)
	inv.Complete = d.complete
	for _, h := range d.images {
		inv.AddImage(h.diffIDs, nil)
		inv.AddNamed([]v1.Hash{h.id}, h.tags)
	}
	return inv, nil
}

// Receive streams the bundle into the daemon's load.
func (d *Daemon) Receive(ctx context.Context) (store.Receiver, error) {
	return store.StreamReceiver(ctx, d.LoadStream, nil), nil
}

// LoadStream loads a docker archive, plain or compressed: all of it, or nothing.
func (d *Daemon) LoadStream(ctx context.Context, r io.Reader) ([]string, error) {
	rcv := d.receiver(false)
	rcv.chains, rcv.whole = true, d.complete
	if _, err := archive.Read(ctx, d.faulty(r), rcv, archive.ReadOptions{}); err != nil {
		return nil, err
	}
	var refs []string
	for _, l := range rcv.loaded {
		refs = append(refs, l.Ref)
	}
	return refs, nil
}

func (d *Daemon) TakesZstd(context.Context) bool { return d.zstd }

// RemoveSteps removes the step images whose layers lead one of images.
func (d *Daemon) RemoveSteps(_ context.Context, images [][]v1.Hash) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.images = slices.DeleteFunc(d.images, func(h held) bool {
		return h.step && len(h.tags) == 0 && slices.ContainsFunc(images, func(diffIDs []v1.Hash) bool {
			return len(h.diffIDs) <= len(diffIDs) && slices.Equal(h.diffIDs, diffIDs[:len(h.diffIDs)])
		})
	})
	return nil
}

func (d *Daemon) Tagged(context.Context) ([]string, error) { return d.Tags(), nil }

// SaveLayers says what Save of refs carries: the seed's images.
func (d *Daemon) SaveLayers(_ context.Context, refs []string) ([][]v1.Hash, int64, error) {
	b, err := d.seeded(refs)
	if err != nil {
		return nil, 0, err
	}
	var layers [][]v1.Hash
	var total int64
	for _, img := range b.Images {
		layers = append(layers, img.DiffIDs())
	}
	for _, blob := range b.Reachable() {
		total += blob.Size
	}
	return layers, total, nil
}

// Save streams the seed as a docker save does.
func (d *Daemon) Save(ctx context.Context, refs []string) (io.ReadCloser, error) {
	b, err := d.seeded(refs)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(archive.Write(ctx, pw, b, source{d.Store}, archive.WriteOptions{})) }()
	return pr, nil
}

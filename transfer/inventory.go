package transfer

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store/docker"
)

// InventoryOptions say how to reach the store an inventory is taken of.
type InventoryOptions struct {
	Docker   *docker.Client
	Insecure bool
}

// Inventory takes the inventory of a store: "docker" (or ""), "oci:DIR", "pool:DIR", or
// "registry:HOST/REPO" (every tag of the repository).
func Inventory(ctx context.Context, store string, opts InventoryOptions) (*dedupe.Inventory, error) {
	kind, arg, _ := strings.Cut(store, ":")
	switch kind {
	case "", "docker":
		client, err := dockerClient(opts.Docker)
		if err != nil {
			return nil, err
		}
		return DockerInventory(ctx, client)
	case "oci":
		l, err := dedupe.OpenLayout(arg)
		if err != nil {
			return nil, err
		}
		return l.Inventory()
	case "pool":
		p, err := dedupe.OpenPool(arg)
		if err != nil {
			return nil, err
		}
		return p.Inventory()
	case "registry":
		return registryInventory(ctx, arg, opts.Insecure)
	}
	return nil, fmt.Errorf("%w: unknown store %q: use docker, oci:DIR, pool:DIR or registry:HOST/REPO", ErrInvalidReference, store)
}

// Have reads what a destination holds from what --have names: an inventory file, a bundle
// loaded there, or a store ferry can take the inventory of (docker, oci:DIR, pool:DIR,
// registry:HOST/REPO).
func Have(ctx context.Context, spec string, opts InventoryOptions) (*dedupe.Inventory, error) {
	f, err := os.Open(spec)
	if err != nil {
		if os.IsNotExist(err) && (spec == "docker" || strings.Contains(spec, ":")) {
			return Inventory(ctx, spec, opts)
		}
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	if head, _ := br.Peek(1); len(head) == 1 && head[0] == '{' {
		return dedupe.ReadInventory(br)
	}
	b, err := archive.Read(ctx, br, archive.Discard, archive.ReadOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", spec, err)
	}
	return dedupe.BundleInventory(b), nil
}

// registryInventory lists the layers of every image tagged in a repository.
func registryInventory(ctx context.Context, repo string, insecure bool) (*dedupe.Inventory, error) {
	r, err := name.NewRepository(repo, nameOptions(insecure)...)
	if err != nil {
		return nil, fmt.Errorf("%w: repository %q: %w", ErrInvalidReference, repo, err)
	}
	tags, err := remote.List(r, registryOptions(ctx, nil)...)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", repo, err)
	}
	inv := dedupe.NewInventory(dedupe.StoreOCI)
	for _, tag := range tags {
		desc, err := remote.Get(r.Tag(tag), registryOptions(ctx, nil)...)
		if err != nil {
			return nil, fmt.Errorf("reading %s:%s: %w", repo, tag, err)
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err == nil {
				err = inv.AddIndex(idx)
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s:%s: %w", repo, tag, err)
			}
			continue
		}
		img, err := desc.Image()
		if err == nil {
			err = inv.AddV1Image(img)
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s:%s: %w", repo, tag, err)
		}
	}
	return inv, nil
}

package transfer

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Inventory takes the inventory of the store ref names (the default store when ""), on host if set.
func Inventory(ctx context.Context, ref, host string, opts Options) (*dedupe.Inventory, error) {
	st, done, err := OpenStore(ctx, cmp.Or(ref, store.DefaultRef()), host, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	inv, err := st.Inventory(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st, err)
	}
	return inv, nil
}

// Have reads what a destination holds from what --have names: an inventory file, a bundle
// loaded there, or a store ferry can take the inventory of.
func Have(ctx context.Context, spec string, opts Options) (*dedupe.Inventory, error) {
	f, err := os.Open(spec)
	if err != nil {
		if os.IsNotExist(err) && store.IsStore(spec) {
			return Inventory(ctx, spec, "", opts)
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

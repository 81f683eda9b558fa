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
// loaded there, or a store ferry can take the inventory of. With withContent, the content
// of a bundle's or a store's layers is indexed too (an inventory file has it or not).
func Have(ctx context.Context, spec string, opts Options, withContent bool) (*dedupe.Inventory, error) {
	inv, err := have(ctx, spec, opts)
	if err != nil || !withContent || inv.Content != nil || isInventoryFile(spec) {
		return inv, err
	}
	if inv.Content, err = ContentIndex(ctx, spec, "", opts); err != nil {
		return nil, err
	}
	return inv, nil
}

func have(ctx context.Context, spec string, opts Options) (*dedupe.Inventory, error) {
	f, err := os.Open(spec)
	if err != nil {
		if os.IsNotExist(err) && store.IsStore(spec) {
			return Inventory(ctx, spec, "", opts)
		}
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	if isJSON(br) {
		return dedupe.ReadInventory(br)
	}
	b, err := archive.Read(ctx, br, archive.Discard, archive.ReadOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", spec, err)
	}
	return dedupe.BundleInventory(b), nil
}

// isJSON reports whether r begins a JSON object: an inventory, not a bundle.
func isJSON(r *bufio.Reader) bool {
	head, _ := r.Peek(1)
	return len(head) == 1 && head[0] == '{'
}

// isInventoryFile reports whether path is an inventory file.
func isInventoryFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return isJSON(bufio.NewReader(f))
}

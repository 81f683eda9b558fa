package transfer

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store"
)

// LoadOptions say where Load puts a bundle.
type LoadOptions struct {
	Options
	// To is a store reference, or "" for the store the kinds say a load goes to
	// (store.Implicit: the docker daemon when one answers, else the default OCI store). Host, if set, is the SSH destination the
	// store is on.
	To, Host string
	// Store, if set, is the store to load into, instead of To.
	Store store.Store
	// Platform picks from multi-platform bundles without manifest.json; nil means the host's.
	Platform *v1.Platform
}

// A LoadResult says where a bundle went and what it held.
type LoadResult struct {
	Store  string
	Images []store.Loaded
	Bundle *archive.Bundle
}

// Load reads a bundle from r and loads it into the store opts names. The store is changed
// only once the whole bundle was read and verified.
func Load(ctx context.Context, r io.Reader, opts LoadOptions) (*LoadResult, error) {
	st, done, err := loadStore(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	if f, ok := st.(store.Fronted); ok {
		// The store behind takes what the front one would, and more: no inventory needed.
		b, err := f.Behind(ctx)
		switch {
		case err != nil && opts.Note != nil:
			opts.Note(err.Error() + ": loading complete images instead")
		case b != nil:
			defer b.Close()
			st = b
		}
	}
	rcv, err := st.Receive(ctx)
	if err != nil {
		return nil, err
	}
	b, err := archive.Read(ctx, r, rcv, archive.ReadOptions{Platform: opts.Platform})
	if err != nil {
		return nil, err
	}
	return &LoadResult{Store: st.String(), Images: rcv.Loaded(), Bundle: b}, nil
}

// loadStore opens the store to load into: without a name, the one the kinds say a load goes
// to (store.Implicit: the docker daemon if it answers, else the default OCI store).
func loadStore(ctx context.Context, opts LoadOptions) (store.Store, func(), error) {
	if opts.Store != nil {
		return opts.Store, func() {}, nil
	}
	ref := opts.To
	if ref == "" && opts.Host != "" {
		ref = store.DefaultRef()
	}
	if ref == "" {
		var err error
		if ref, err = store.Implicit(ctx); err != nil {
			return nil, nil, err
		}
	}
	return OpenStore(ctx, ref, opts.Host, opts.Options)
}

package transfer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
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
	// base, for a content delta, holds images of the store read ahead (by the helper, while
	// the delta was made), which the layers it builds on are looked for in first.
	base *prefetch
}

// A LoadResult says where a bundle went and what it held.
type LoadResult struct {
	Store  string
	Images []store.Loaded
	Bundle *archive.Bundle
	// Rebuilt, for a content delta, says what it held.
	Rebuilt *content.Summary
}

// Load reads a bundle from r and loads it into the store opts names. The store is changed
// only once the whole bundle was read and verified. A content delta is rebuilt first, from
// it and the layers of the store, each checked against its diffID.
func Load(ctx context.Context, r io.Reader, opts LoadOptions) (*LoadResult, error) {
	st, done, err := loadStore(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	br := bufio.NewReaderSize(r, 64<<10)
	if !content.IsDelta(br) {
		return load(ctx, st, opts, func(rcv store.Receiver, check func(*archive.Bundle) error) (*archive.Bundle, error) {
			return archive.Read(ctx, br, rcv, archive.ReadOptions{Platform: opts.Platform, Check: check})
		})
	}
	rb, err := content.Rebuild(ctx, br, storeBase{st, opts.base}, "")
	if err != nil {
		return nil, err
	}
	defer rb.Close()
	src := newLearning(rb)
	res, err := load(ctx, st, opts, func(rcv store.Receiver, check func(*archive.Bundle) error) (*archive.Bundle, error) {
		if err := check(rb.Bundle); err != nil {
			rcv.Abort(err)
			return nil, err
		}
		return rb.Bundle, archive.Feed(ctx, rb.Bundle, src, rcv)
	})
	if res != nil {
		res.Rebuilt = &rb.Summary
	}
	if err == nil {
		src.save()
	}
	return res, err
}

// load loads into st what read hands its receiver, once check passed the bundle.
func load(ctx context.Context, st store.Store, opts LoadOptions, read func(rcv store.Receiver, check func(*archive.Bundle) error) (*archive.Bundle, error)) (*LoadResult, error) {
	// The store behind takes what the front one would, and more: no inventory needed.
	st, done := storeBehind(ctx, st, opts.Note)
	defer done()
	rcv, err := st.Receive(ctx)
	if err != nil {
		return nil, err
	}
	var left string
	b, err := read(rcv, func(b *archive.Bundle) (err error) {
		left, err = leftOut(st, b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if left != "" && opts.Note != nil {
		opts.Note(left)
	}
	return &LoadResult{Store: st.String(), Images: rcv.Loaded(), Bundle: b}, nil
}

// storeBehind returns the store st keeps its images in, where st is Fronted and that store
// can be used (docker on the containerd image store: its containerd, which reads and takes
// images without docker's save and load), else st, and note, if set, is told why not; done
// closes what it opened.
func storeBehind(ctx context.Context, st store.Store, note func(string)) (_ store.Store, done func()) {
	if f, ok := st.(store.Fronted); ok {
		b, err := f.Behind(ctx)
		switch {
		case err != nil && note != nil:
			note(err.Error() + ": loading complete images instead")
		case b != nil:
			return b, func() { b.Close() }
		}
	}
	return st, func() {}
}

// ErrImagesOnly: a bundle of artifacts alone (a Helm chart) for a store that holds images only.
var ErrImagesOnly = errors.New("holds images only")

// leftOut says in one line what st leaves out of b, when it takes the images of manifest.json
// alone (no store.OCIKeeper): "" when nothing. A bundle without images it refuses.
func leftOut(st store.Store, b *archive.Bundle) (string, error) {
	if _, ok := st.(store.OCIKeeper); ok {
		return "", nil
	}
	o := b.OCIOnly()
	switch {
	case o.Empty():
		return "", nil
	case len(b.Images) == 0:
		return "", fmt.Errorf("%s %w: the bundle holds no image, only %s; load it into a registry or oci:DIR", st, ErrImagesOnly, o)
	}
	return fmt.Sprintf("left out %s: %s holds images only; load into a registry or oci:DIR to keep them", o, st), nil
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

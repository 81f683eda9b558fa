// Package pool is a ferry pool as a store and a source: pool:DIR[:NAME]. Read, NAME is a
// bundle of the pool (or NAME/TAG, an image of it); loaded into, the bundle is added under
// NAME.
package pool

import (
	"context"
	"fmt"
	"slices"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:   "pool",
	Syntax: "pool:DIR[:NAME]",
	Doc:    "a ferry pool. As a source, NAME is a bundle in it (or NAME/TAG, one image of it); as a store, the bundle is added as NAME. On this machine, not on a host",
	Place:  true,
	Check:  store.DirArg,
	Open: func(_ context.Context, arg string, env store.Env) (store.Store, error) {
		dir, name := store.CutRef(arg)
		p, err := dedupe.OpenPool(dir)
		if err != nil {
			return nil, err
		}
		p.Waiting = env.Waiting
		return New(p, name), nil
	},
}

// A Store is a pool.
type Store struct {
	*dedupe.Pool
	name  string         // the bundle a load adds
	added *dedupe.Adding // what the last Receive began
}

// New is the pool p as a store that adds a bundle loaded into it as name.
func New(p *dedupe.Pool, name string) *Store { return &Store{Pool: p, name: name} }

func (s *Store) String() string { return "pool:" + s.Dir }
func (s *Store) Close() error   { return nil }

// Inventory lists every blob the pool holds, and the layers it holds compressed by the
// digests they came with.
func (s *Store) Inventory(context.Context) (*dedupe.Inventory, error) { return s.Pool.Inventory() }

// Receive adds the bundle to the pool under the name the reference gave. Every bundle a
// pool takes comes through it: a load or send into pool:DIR:NAME, and ferry pool add.
func (s *Store) Receive(context.Context) (store.Receiver, error) {
	if s.name == "" {
		return nil, fmt.Errorf("%w: name the bundle to add: pool:%s:NAME", store.ErrInvalidReference, s.Dir)
	}
	a, err := s.Add(s.name)
	if err != nil {
		return nil, err
	}
	s.added = a
	return &receiver{Adding: a}, nil
}

// Added is the add the last Receive began: once committed, its record and the bytes the
// pool took in and already had.
func (s *Store) Added() *dedupe.Adding { return s.added }

type receiver struct {
	*dedupe.Adding
	loaded []store.Loaded
}

func (r *receiver) Commit(ctx context.Context, b *archive.Bundle) error {
	if err := r.Adding.Commit(ctx, b); err != nil {
		return err
	}
	r.loaded = store.LoadedImages(b)
	return nil
}

func (r *receiver) Loaded() []store.Loaded { return r.loaded }

// KeepsOCI: a pool keeps bundles whole, and exports them byte for byte (store.OCIKeeper).
func (s *Store) KeepsOCI() {}

// Open exports bundles or images of the pool: refs are bundle names or NAME/TAG.
func (s *Store) Open(_ context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	b, src, err := s.Export(refs)
	if err != nil {
		return nil, err
	}
	return store.NewImages(b, src, nil).Counted(opts.Progress), nil
}

// Tagged lists the pool's bundles by name, sorted: each one names all its images (send
// --all, a content index).
func (s *Store) Tagged(context.Context) ([]string, error) {
	records, err := s.Records()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range records {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return names, nil
}

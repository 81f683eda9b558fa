package transfer

import (
	"context"
	"io"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// SaveOptions say where Save reads images and how it writes them.
type SaveOptions struct {
	Options
	// From is the store image arguments are read from (the default store when ""); FromHost,
	// if set, the SSH destination it is on. Bundle files and references to a place of their
	// own (oci:DIR[:REF], pool:DIR[:NAME]) are sources of their own.
	From, FromHost string
	// Store, if set, is the store image arguments are read from, instead of From.
	Store store.Store
	// Read says how images are read, and how the bundle is written (Read.Write).
	Read store.ReadOptions
	// Have, if set, is what the destination holds: Save leaves those layers out (a delta).
	Have *dedupe.Inventory
	// Content, if set, indexes the content of the destination's layers: Save writes a
	// content delta, the layers Have leaves in as the chunks Content lacks (content.Make).
	Content *content.Index
	// Delta, if set, is told what the content delta holds.
	Delta func(content.Summary)
}

// Save reads images from their source and writes one bundle of them to w.
func Save(ctx context.Context, w io.Writer, args []string, opts SaveOptions) (*archive.Bundle, error) {
	im, err := Open(ctx, args, opts)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	b := im.Bundle
	if opts.Have != nil {
		b = opts.Have.Thin(b)
	}
	if opts.Content == nil {
		return b, im.Write(ctx, w, b, opts.Read.Write)
	}
	sum, err := content.Make(ctx, w, b, im.Src, opts.Content, opts.Read.TempDir)
	if err == nil && opts.Delta != nil {
		opts.Delta(*sum)
	}
	return b, err
}

// Open reads images from their one source, once: a docker daemon's through one streamed
// `docker save` into a spool encoded for opts.Read.Write; a registry's or a layout's as
// descriptors whose blobs are read when written.
func Open(ctx context.Context, args []string, opts SaveOptions) (*store.Images, error) {
	src, st, done, err := openSource(ctx, args, opts)
	if err != nil {
		return nil, err
	}
	defer done()
	return src.Open(ctx, st, opts.Read)
}

// Copy reads images from their one source straight into sink: a docker daemon's as one
// streamed `docker save`, others blob by blob. Nothing is staged on the way.
func Copy(ctx context.Context, args []string, opts SaveOptions, sink archive.Sink) (*archive.Bundle, error) {
	src, st, done, err := openSource(ctx, args, opts)
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	defer done()
	if c, ok := st.(store.Copier); ok {
		return c.Copy(ctx, src.Refs, opts.Read, sink)
	}
	im, err := src.Open(ctx, st, opts.Read)
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	defer im.Close()
	return im.Bundle, archive.Feed(ctx, im.Bundle, im.Src, sink)
}

// openSource opens the one source of args and its store (nil for a bundle file).
func openSource(ctx context.Context, args []string, opts SaveOptions) (Source, store.Store, func(), error) {
	sources, err := Sources(args, opts.From, opts.FromHost)
	if err == nil {
		var src Source
		if src, err = one(sources); err == nil {
			return src.open(ctx, opts.Store, opts.Options)
		}
	}
	return Source{}, nil, nil, err
}

// open opens the source's store: given, when the source is the image arguments' store.
func (s Source) open(ctx context.Context, given store.Store, opts Options) (Source, store.Store, func(), error) {
	switch {
	case s.File != "":
		return s, nil, func() {}, nil
	case given != nil && !isPlace(s.Store):
		return s, given, func() {}, nil
	}
	st, done, err := OpenStore(ctx, s.Store, s.Host, opts)
	return s, st, done, err
}

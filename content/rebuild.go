package content

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A Base opens the uncompressed tars of layers a store holds.
type Base interface {
	// Open calls each with the tar of each of layers, by its place in layers, in any order.
	// A layer it cannot find is an error that names it.
	Open(ctx context.Context, layers []Layer, each func(i int, r io.Reader) error) error
}

// A Rebuilt bundle is a content delta made whole: every layer the delta gives is present in
// Bundle, served by Src from a temporary directory that Close removes.
type Rebuilt struct {
	Bundle  *archive.Bundle
	Src     archive.BlobSource
	Summary Summary
	d       *delta
}

// Close removes what the rebuild staged.
func (r *Rebuilt) Close() error { r.d.close(); return nil }

// Rebuild reads a content delta from r and rebuilds its layers from it and from the layers
// base opens, each checked against its diffID, staging them under tempDir ("" for the
// system's). A layer base lacks, or whose content is not what the delta expects, fails it.
func Rebuild(ctx context.Context, r io.Reader, base Base, tempDir string) (*Rebuilt, error) {
	d, err := readDelta(ctx, r, tempDir)
	if err != nil {
		return nil, err
	}
	if err := d.readBase(ctx, base); err != nil {
		d.close()
		return nil, err
	}
	sum := d.summary()
	for _, l := range d.h.Layers {
		if l.Whole {
			continue
		}
		if err := d.rebuild(l); err != nil {
			d.close()
			return nil, fmt.Errorf("rebuilding layer %s: %w", l.Digest, err)
		}
	}
	os.Remove(filepath.Join(d.dir, "base"))
	given := map[v1.Hash]bool{}
	for _, l := range d.h.Layers {
		given[l.Digest] = true
	}
	full := d.thin.Supply(func(b *archive.Blob) bool { return given[b.Digest] })
	return &Rebuilt{Bundle: full, Src: dirSource(d.dir), Summary: sum, d: d}, nil
}

// summary says what the delta holds.
func (d *delta) summary() Summary {
	s := Summary{Layers: len(d.h.Layers), New: d.h.Pack, Base: len(d.h.Base)}
	for _, l := range d.h.Layers {
		switch {
		case l.Whole:
			s.Whole++
			s.Blobs += l.Size
		case l.Held:
			s.Held++
			s.Rebuilt++
		default:
			s.Rebuilt++
		}
	}
	return s
}

// readBase copies the spans of the base layers the recipes use into the base file, checking
// each layer read whole against its diffID.
func (d *delta) readBase(ctx context.Context, base Base) error {
	f, err := os.Create(filepath.Join(d.dir, "base"))
	if err != nil {
		return err
	}
	defer f.Close()
	var at int64
	var used []Layer
	var index []int
	for i, l := range d.h.Base {
		if len(d.ranges[i]) > 0 {
			used, index = append(used, l), append(index, i)
		}
	}
	err = base.Open(ctx, used, func(u int, r io.Reader) error {
		i := index[u]
		l := d.h.Base[i]
		h := sha256.New()
		cr := &countReader{r: io.TeeReader(r, h)}
		short := func(err error) error {
			if err == io.EOF {
				err = fmt.Errorf("%w: it ends at %d bytes of the %d the delta expects", archive.ErrDiffIDMismatch, cr.n, l.Size)
			}
			return fmt.Errorf("the store's layer %s: %w", l.DiffID, err)
		}
		for k, s := range d.ranges[i] {
			if _, err := io.CopyN(io.Discard, cr, s.start-cr.n); err != nil {
				return short(err)
			}
			if _, err := io.CopyN(f, cr, s.end-s.start); err != nil {
				return short(err)
			}
			d.ranges[i][k].at = at
			at += s.end - s.start
		}
		if _, err := io.Copy(io.Discard, cr); err != nil {
			return fmt.Errorf("the store's layer %s: %w", l.DiffID, err)
		}
		if got := archive.HashOf(h); got != l.DiffID || cr.n != l.Size {
			return fmt.Errorf("the store's layer %s: %w: %d bytes hashing to %s", l.DiffID, archive.ErrDiffIDMismatch, cr.n, got)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return f.Sync()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// rebuild writes layer l from its recipe, and checks it.
func (d *delta) rebuild(l deltaLayer) error {
	base, err := os.Open(filepath.Join(d.dir, "base"))
	if err != nil {
		return err
	}
	defer base.Close()
	f, err := os.Create(filepath.Join(d.dir, l.Digest.Hex))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	err = d.walk(l, func(o op, raw io.Reader) error {
		var src io.Reader = raw
		switch o.kind {
		case opPack:
			src = io.NewSectionReader(d.pack, o.off, o.n)
		case opBase:
			spans := d.ranges[o.layer]
			k := sort.Search(len(spans), func(k int) bool { return spans[k].end > o.off })
			src = io.NewSectionReader(base, spans[k].at+o.off-spans[k].start, o.n)
		}
		if n, err := io.CopyN(w, src, o.n); err != nil {
			return fmt.Errorf("copying %d of %d bytes: %w", n, o.n, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got := archive.HashOf(h); got != l.DiffID {
		return fmt.Errorf("%w: it hashes to %s", archive.ErrDiffIDMismatch, got)
	}
	return f.Close()
}

// dirSource serves the blobs of a directory, named by their hex digests.
type dirSource string

func (s dirSource) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	return os.Open(filepath.Join(string(s), b.Digest.Hex))
}

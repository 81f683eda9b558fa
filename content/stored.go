package content

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/leftover"
)

// A Stored layer is a layer a store keeps as content (what Encode wrote): a recipe over Base
// and its own pack. Recipe and Pack are named by the sha256 and size of their bytes (a Pack
// of size 0 is none); a Base opens all of them, decompressed.
type Stored struct {
	Layer  Layer
	Recipe Layer
	Pack   Layer
	Base   []Layer
}

// Scan reads a layer's tar to its end: what a Cache keeps of it.
func Scan(ctx context.Context, r io.Reader) (Chunks, error) {
	l, recs, err := scan(ctx, r)
	return Chunks{l, recs}, err
}

// Rebuild writes the layer s gives to w, the runs of its base layers it copies staged under
// tempDir ("" for the system's), and fails at its end unless the layer hashes to its
// diffID. Every op of the recipe is checked against what it may name, and the recipe and
// the pack against their sha256.
func (s Stored) Rebuild(ctx context.Context, w io.Writer, base Base, tempDir string) error {
	leftover.Clean(tempDir, "ferry-rebuild-") // a killed run's
	dir, err := os.MkdirTemp(tempDir, leftover.Pattern("ferry-rebuild-"))
	if err != nil {
		return err
	}
	d := &delta{dir: dir, h: header{Base: s.Base, Recipes: s.Recipe.Size, Pack: s.Pack.Size}}
	defer d.close()
	l := deltaLayer{Digest: s.Layer.DiffID, DiffID: s.Layer.DiffID, Size: s.Layer.Size, Recipe: [2]int64{0, s.Recipe.Size}}
	if d.recipes, err = d.part(ctx, base, s.Recipe, recipesName); err != nil {
		return fmt.Errorf("its recipe: %w", err)
	}
	if d.pack, err = d.part(ctx, base, s.Pack, packName); err != nil {
		return fmt.Errorf("its pack: %w", err)
	}
	d.ranges = make([][]span, len(s.Base))
	if err := d.walk(l, d.note); err != nil {
		return err
	}
	for i, spans := range d.ranges {
		d.ranges[i] = merge(spans)
	}
	if err := d.readBase(ctx, base); err != nil {
		return err
	}
	if d.base, err = os.Open(filepath.Join(d.dir, "base")); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := d.rebuild(l, bw); err != nil {
		return err
	}
	return bw.Flush()
}

// part stages a recipe or pack, which base opens, in a file named name, checking it
// against l.
func (d *delta) part(ctx context.Context, base Base, l Layer, name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(d.dir, name))
	if err != nil || l.Size == 0 {
		return f, err
	}
	release, err := base.Open(ctx, []Layer{l}, func(_ int, r io.Reader) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, l.Size+1))
		switch {
		case err != nil:
			return fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
		case n != l.Size || archive.HashOf(h) != l.DiffID:
			return fmt.Errorf("%w: %d bytes hashing to %s, not %d hashing to %s", archive.ErrDigestMismatch, n, archive.HashOf(h), l.Size, l.DiffID)
		}
		return nil
	})
	if release != nil {
		release()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

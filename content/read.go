package content

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/leftover"
)

// A delta is a content delta read into a temporary directory and checked: every recipe op
// within what it may name, every layer's recipe giving its size, every blob carried whole
// hashing to its digest.
type delta struct {
	h       header
	thin    *archive.Bundle
	dir     string
	recipes *os.File
	pack    *os.File
	base    *os.File      // the runs of the store's layers the recipes copy, once read
	ranges  [][]span      // for each base layer, the merged spans the recipes copy
	inPlace []io.ReaderAt // for each base layer, the store's own tar where it can be read in place
	release func()        // releases what the store keeps open for inPlace
	whole   map[v1.Hash]bool
}

// A span is bytes [start, end) of a base layer, kept at at in the base file once read.
type span struct{ start, end, at int64 }

// Limits on what a delta may claim, against crafted input: the header's size, and how many
// times its own bytes (and the store's layers it copies) the layers it gives may add up to.
const (
	maxHeader = 64 << 20
	maxExpand = 1024
)

// readDelta reads a content delta from r into a new directory under tempDir.
func readDelta(ctx context.Context, r io.Reader, tempDir string) (*delta, error) {
	leftover.Clean(tempDir, "ferry-rebuild-") // a killed run's
	dir, err := os.MkdirTemp(tempDir, leftover.Pattern("ferry-rebuild-"))
	if err != nil {
		return nil, err
	}
	d := &delta{dir: dir, whole: map[v1.Hash]bool{}}
	if err := d.read(ctx, r); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *delta) read(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(archive.ContextReader(ctx, r))
	var read int64 // bytes of the delta's entries
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
		}
		read += hdr.Size
		if err := d.entry(ctx, i, hdr, tr); err != nil {
			return fmt.Errorf("content delta: %s: %w", hdr.Name, err)
		}
	}
	if d.pack == nil {
		return fmt.Errorf("%w: content delta: ends before its pack", archive.ErrTruncated)
	}
	return d.check(read)
}

func (d *delta) close() {
	if d.release != nil {
		d.release()
	}
	for _, f := range []*os.File{d.recipes, d.pack, d.base} {
		if f != nil {
			f.Close()
		}
	}
	os.RemoveAll(d.dir)
}

// order is the entries a delta begins with.
var order = []string{headerName, trapName, bundleName, recipesName, packName}

func (d *delta) entry(ctx context.Context, i int, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag != tar.TypeReg || (i < len(order) && hdr.Name != order[i]) {
		return fmt.Errorf("%w: entry %d of a content delta is %q (%c), not %q", archive.ErrInvalidMetadata, i, hdr.Name, hdr.Typeflag, order[min(i, len(order)-1)])
	}
	switch hdr.Name {
	case headerName:
		if hdr.Size > maxHeader {
			return fmt.Errorf("%w: %d bytes", archive.ErrTooLarge, hdr.Size)
		}
		dec := json.NewDecoder(r)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d.h); err != nil {
			return fmt.Errorf("%w: %v", archive.ErrInvalidMetadata, err)
		}
		if d.h.Version != version {
			return fmt.Errorf("%w: version %d: this ferry reads version %d", archive.ErrInvalidMetadata, d.h.Version, version)
		}
		return nil
	case trapName:
		return nil
	case bundleName:
		b, err := archive.Read(ctx, r, archive.Discard, archive.ReadOptions{})
		d.thin = b
		return err
	case recipesName:
		f, err := d.unzstd(recipesName, r, hdr.Size, d.h.Recipes)
		d.recipes = f
		return err
	case packName:
		f, err := d.unzstd(packName, r, hdr.Size, d.h.Pack)
		d.pack = f
		return err
	}
	return d.blob(hdr.Name, r, hdr.Size)
}

// unzstd decompresses a zstd entry of size bytes into a file of the directory, which must
// come to want bytes.
func (d *delta) unzstd(name string, r io.Reader, size, want int64) (*os.File, error) {
	if want < 0 || want > maxExpand*size+1<<20 {
		return nil, fmt.Errorf("%w: %d bytes claimed from %d", archive.ErrTooLarge, want, size)
	}
	zr, codec, err := compress.NewReader(r)
	if err != nil || codec != compress.Zstd {
		return nil, fmt.Errorf("%w: not zstd (%v)", archive.ErrCorrupt, err)
	}
	defer zr.Close()
	f, err := os.Create(filepath.Join(d.dir, name))
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(f, io.LimitReader(zr, want+1))
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: %v", archive.ErrTruncated, err)
	case err != nil:
		err = fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
	case n != want:
		err = fmt.Errorf("%w: %d bytes, the header says %d", archive.ErrCorrupt, n, want)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// blob keeps a layer the delta carries whole.
func (d *delta) blob(name string, r io.Reader, size int64) error {
	var hex string
	if _, err := fmt.Sscanf(name, "blobs/sha256/%64s", &hex); err != nil || name != "blobs/sha256/"+hex {
		return fmt.Errorf("%w: not a blob", archive.ErrInvalidMetadata)
	}
	digest, err := v1.NewHash("sha256:" + hex)
	if err != nil || d.whole[digest] {
		return fmt.Errorf("%w: not a blob, or carried twice", archive.ErrInvalidMetadata)
	}
	f, err := os.Create(filepath.Join(d.dir, hex))
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && archive.HashOf(h) != digest {
		err = fmt.Errorf("%w: hashes to %s", archive.ErrDigestMismatch, archive.HashOf(h))
	}
	d.whole[digest] = true
	return err
}

// check checks the header against the bundle and the recipes, and finds the spans of the
// base layers the recipes copy.
func (d *delta) check(read int64) error {
	layers := map[v1.Hash]*archive.Blob{}
	for _, l := range d.thin.LayerOrder() {
		layers[l.Digest] = l.Blob
	}
	d.ranges = make([][]span, len(d.h.Base))
	var out, next int64
	for _, l := range d.h.Layers {
		blob := layers[l.Digest]
		switch {
		case blob == nil || blob.Present() || blob.Size != l.Size:
			return fmt.Errorf("%w: content delta: layer %s is not a layer its bundle leaves out, of that size", archive.ErrInvalidMetadata, l.Digest)
		case l.Whole != d.whole[l.Digest]:
			return fmt.Errorf("%w: content delta: layer %s is said to travel whole and does not, or the other way", archive.ErrMissingBlob, l.Digest)
		case l.Whole:
			continue
		case l.Digest != l.DiffID || l.Recipe[0] != next || l.Recipe[1] <= 0:
			return fmt.Errorf("%w: content delta: layer %s: its recipe is not where the one before it ends", archive.ErrInvalidMetadata, l.Digest)
		}
		next += l.Recipe[1]
		if err := d.walk(l, d.note); err != nil {
			return fmt.Errorf("content delta: layer %s: %w", l.Digest, err)
		}
		out += l.Size
	}
	var base int64
	for i, spans := range d.ranges {
		d.ranges[i] = merge(spans)
		base += d.h.Base[i].Size
	}
	if next != d.h.Recipes {
		return fmt.Errorf("%w: content delta: the recipes hold %d bytes no layer uses", archive.ErrInvalidMetadata, d.h.Recipes-next)
	}
	if out > base+maxExpand*read+1<<30 {
		return fmt.Errorf("%w: content delta: its layers add up to %d bytes from %d", archive.ErrTooLarge, out, read)
	}
	return nil
}

// note records the base span an op copies.
func (d *delta) note(o op, _ io.Reader) error {
	if o.kind == opBase {
		d.ranges[o.layer] = addSpan(d.ranges[o.layer], span{start: o.off, end: o.off + o.n})
	}
	return nil
}

// spanGap is how far apart two spans of a base layer may lie and still be read as one: the
// bytes between are staged rather than skipped, and a layer of a million small files copied
// from the headers it skips needs a few spans, not a million.
const spanGap = 64 << 10

// addSpan adds s to spans, joined to the last where it begins within spanGap past its start
// (recipes copy mostly forward). Before the list grows past 4,096 spans, it is merged: its
// length stays within twice the merged list's, at most one span per spanGap of the layer.
func addSpan(spans []span, s span) []span {
	if n := len(spans); n > 0 && s.start >= spans[n-1].start && s.start <= spans[n-1].end+spanGap {
		spans[n-1].end = max(spans[n-1].end, s.end)
		return spans
	}
	if len(spans) == cap(spans) && len(spans) >= 1<<12 {
		spans = merge(spans)
	}
	return append(spans, s)
}

// walk reads layer l's recipe, checking every op, and hands each to do with, for an opRaw,
// its bytes (what do leaves of them is skipped). The ops must add up to l.Size.
func (d *delta) walk(l deltaLayer, do func(op, io.Reader) error) error {
	r := bufio.NewReader(io.NewSectionReader(d.recipes, l.Recipe[0], l.Recipe[1]))
	var size int64
	for {
		o, err := readOp(r)
		if err != nil {
			return fmt.Errorf("%w: %v", archive.ErrCorrupt, err)
		}
		if o.kind == opEnd {
			break
		}
		if err := d.inBounds(o); err != nil {
			return err
		}
		if size += o.n; size > l.Size || o.n <= 0 {
			return fmt.Errorf("%w: its recipe gives more than its %d bytes", archive.ErrInvalidMetadata, l.Size)
		}
		raw := &io.LimitedReader{R: r}
		if o.kind == opRaw {
			raw.N = o.n
		}
		if err := do(o, raw); err != nil {
			return err
		}
		if io.Copy(io.Discard, raw); raw.N != 0 {
			return fmt.Errorf("%w: a recipe is cut short", archive.ErrCorrupt)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF || size != l.Size {
		return fmt.Errorf("%w: its recipe gives %d of its %d bytes, or runs on past its end", archive.ErrInvalidMetadata, size, l.Size)
	}
	return nil
}

// inBounds checks that an op names only what the delta has.
func (d *delta) inBounds(o op) error {
	switch {
	case o.kind == opBase && (int(o.layer) >= len(d.h.Base) || o.off+o.n > d.h.Base[o.layer].Size):
		return fmt.Errorf("%w: a recipe copies past the end of a base layer", archive.ErrInvalidMetadata)
	case o.kind == opPack && o.off+o.n > d.h.Pack:
		return fmt.Errorf("%w: a recipe copies past the end of the pack", archive.ErrInvalidMetadata)
	}
	return nil
}

// merge sorts spans and joins, in place, those that lie within spanGap of each other.
func merge(spans []span) []span {
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && s.start <= out[n-1].end+spanGap {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// IsDelta reports whether r, a bundle's first bytes, begins a content delta; r's bytes are
// only peeked.
func IsDelta(r *bufio.Reader) bool {
	head, _ := r.Peek(512)
	if len(head) < 512 {
		return false
	}
	hdr, err := tar.NewReader(bytes.NewReader(head)).Next()
	return (err == nil || err == io.ErrUnexpectedEOF) && hdr != nil && hdr.Name == headerName
}

package content

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/leftover"
)

// Make writes to w a content delta of bundle b, whose blobs src serves, for a store whose
// layers base indexes: each layer b carries as a recipe over the content base knows and the
// new chunks it does not (a layer base holds, as a copy of it); a compressed layer (its
// digest is not its diffID: a registry's blob, whose bytes ferry cannot make again), whole.
// The layers b leaves out (a thin bundle: the store holds them) stay out. It stages what it
// writes in tempDir ("" for the system's).
func Make(ctx context.Context, w io.Writer, b *archive.Bundle, src archive.BlobSource, base *Index, tempDir string) (*Summary, error) {
	leftover.Clean(tempDir, "ferry-delta-") // a killed run's
	dir, err := os.MkdirTemp(tempDir, leftover.Pattern("ferry-delta-"))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	m, err := newMaker(dir, base)
	if err != nil {
		return nil, err
	}
	defer m.close()
	var layers, cutting []*archive.Layer
	seen := map[v1.Hash]bool{}
	for _, l := range b.LayerOrder() {
		if !seen[l.Digest] && l.Present() {
			seen[l.Digest] = true
			layers = append(layers, l)
			if l.Digest == l.DiffID && !base.Holds(l.DiffID) {
				cutting = append(cutting, l)
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.cuts = startCutting(ctx, cutting, src)
	var whole []*archive.Blob
	for _, l := range layers {
		if l.Digest != l.DiffID {
			whole = append(whole, l.Blob)
			m.h.Layers = append(m.h.Layers, deltaLayer{Digest: l.Digest, DiffID: l.DiffID, Size: l.Size, Whole: true})
			m.sum.Whole++
			m.sum.Blobs += l.Size
			continue
		}
		if err := m.layer(ctx, l, src); err != nil {
			return nil, err
		}
	}
	m.sum.Layers = len(m.h.Layers)
	if err := m.finish(); err != nil {
		return nil, err
	}
	return &m.sum, m.write(ctx, w, b, src, whole)
}

// A maker writes a delta's recipes and pack as it reads layers.
type maker struct {
	*encoder
	dir  string
	h    header
	sum  Summary
	cuts *cutter // the layers to cut, cut ahead
	next int     // the next of them

	recipes, pack  *os.File
	recipeZ, packZ *zstd.Encoder
}

func newMaker(dir string, base *Index) (*maker, error) {
	m := &maker{dir: dir}
	m.h = header{Version: version, Note: note}
	var err error
	if m.recipes, m.recipeZ, err = zstdFile(dir, recipesName); err != nil {
		return nil, err
	}
	if m.pack, m.packZ, err = zstdFile(dir, packName); err != nil {
		m.recipes.Close()
		return nil, err
	}
	m.encoder = newEncoder(base, m.recipeZ, m.packZ)
	return m, nil
}

func zstdFile(dir, name string) (*os.File, *zstd.Encoder, error) {
	f, err := os.Create(dir + "/" + name)
	if err != nil {
		return nil, nil, err
	}
	zw, err := newZstd(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, zw, nil
}

func (m *maker) close() {
	m.recipeZ.Close()
	m.packZ.Close()
	m.recipes.Close()
	m.pack.Close()
}

// layer writes the recipe of one uncompressed layer.
func (m *maker) layer(ctx context.Context, l *archive.Layer, src archive.BlobSource) error {
	start := m.rw.n
	dl := deltaLayer{Digest: l.Digest, DiffID: l.DiffID, Size: l.Size}
	if i, ok := m.x.layer[l.DiffID]; ok {
		dl.Size, dl.Held = m.x.Layers[i].Size, true
		if err := m.rw.copy(op{kind: opBase, layer: m.baseLayer(uint32(i)), n: dl.Size}); err != nil {
			return err
		}
		m.sum.Held++
	} else if err := m.scan(ctx, l, src); err != nil {
		return err
	}
	if err := m.rw.end(); err != nil {
		return err
	}
	dl.Recipe = [2]int64{start, m.rw.n - start}
	m.h.Layers = append(m.h.Layers, dl)
	m.sum.Rebuilt++
	return nil
}

// scan writes the recipe of a layer once cut, adding the chunks base lacks to the pack.
func (m *maker) scan(ctx context.Context, l *archive.Layer, src archive.BlobSource) error {
	ch, done, err := m.cuts.take(m.next)
	m.next++
	if err != nil {
		return err
	}
	defer done()
	rc, err := src.Open(ctx, l.Blob)
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", l.Digest, err)
	}
	defer rc.Close()
	m.read = 0
	if err := replay(ctx, rc, ch, m); err != nil {
		return fmt.Errorf("reading layer %s: %w", l.Digest, err)
	}
	return nil
}

// finish ends the recipes and the pack.
func (m *maker) finish() error {
	for _, err := range []error{m.flush(), m.recipeZ.Close(), m.packZ.Close()} {
		if err != nil {
			return err
		}
	}
	m.h.Recipes, m.h.Pack, m.h.Base = m.rw.n, m.size, m.base
	m.sum.New, m.sum.Base = m.h.Pack, len(m.h.Base)
	return nil
}

// write writes the delta's tar.
func (m *maker) write(ctx context.Context, w io.Writer, b *archive.Bundle, src archive.BlobSource, whole []*archive.Blob) error {
	hdr, err := json.Marshal(m.h)
	if err != nil {
		return err
	}
	trap, _ := json.Marshal([]map[string]any{{"Config": trapConfig, "RepoTags": nil, "Layers": []string{}}})
	var thin bytes.Buffer
	layers := map[v1.Hash]bool{}
	for _, l := range m.h.Layers {
		layers[l.Digest] = true
	}
	if err := archive.Write(ctx, &thin, b.LeaveOut(func(blob *archive.Blob) bool { return layers[blob.Digest] }), src, archive.WriteOptions{}); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{{headerName, hdr}, {trapName, trap}, {bundleName, thin.Bytes()}} {
		if err := tarFile(tw, e.name, int64(len(e.data)), bytes.NewReader(e.data)); err != nil {
			return err
		}
	}
	for _, f := range []*os.File{m.recipes, m.pack} {
		size, err := f.Seek(0, io.SeekEnd)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err == nil {
			err = tarFile(tw, f.Name()[len(m.dir)+1:], size, f)
		}
		if err != nil {
			return err
		}
		if f == m.pack {
			m.sum.Pack = size
		} else {
			m.sum.Recipes = size
		}
	}
	for _, blob := range whole {
		rc, err := src.Open(ctx, blob)
		if err != nil {
			return fmt.Errorf("reading layer %s: %w", blob.Digest, err)
		}
		err = tarFile(tw, "blobs/sha256/"+blob.Digest.Hex, blob.Size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

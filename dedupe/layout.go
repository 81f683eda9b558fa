package dedupe

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A Layout is an OCI image layout directory ferry writes into: blobs/sha256/<hex>,
// index.json, oci-layout, on this machine or on a host over SFTP (its FS). A blob appears
// under its digest only once its content hashed to it, and index.json, replaced atomically
// under the layout's lock, names an image only once all its blobs are there; so concurrent
// writers lose nothing, and a cut transfer leaves whole blobs that count the next time.
type Layout struct {
	Dir string
	FS  FS
	// Waiting, if set, is told when a lock another writer holds is waited for, and why.
	Waiting func(string)
}

// Names ferry gives its own files in a layout: never foreign content.
const (
	lockName    = ".ferry.lock"
	stagePrefix = ".ferry-stage-"
	tempPrefix  = ".ferry-tmp-"
)

// OpenLayout opens an OCI layout directory on this machine (see OpenLayoutFS).
func OpenLayout(dir string) (*Layout, error) { return OpenLayoutFS(LocalFS{}, dir) }

// OpenLayoutFS opens an OCI layout directory; a missing or empty one (ferry's own leftovers
// aside) is made a layout by the first commit. A directory holding anything else is refused.
func OpenLayoutFS(fsys FS, dir string) (*Layout, error) {
	l := &Layout{Dir: dir, FS: fsys}
	entries, err := fsys.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	foreign := false
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "oci-layout":
			return l, nil
		case !strings.HasPrefix(name, ".ferry"):
			foreign = true
		}
	}
	if foreign {
		return nil, fmt.Errorf("%s is not empty and not an OCI image layout (no oci-layout file)", dir)
	}
	return l, nil
}

func (l *Layout) path(elem ...string) string { return l.FS.Join(append([]string{l.Dir}, elem...)...) }
func (l *Layout) blobDir() string            { return l.path("blobs", "sha256") }

// init makes the directory a layout: oci-layout first (so that another ferry opening the
// directory meanwhile sees a layout, or only ferry's own files), then blobs/sha256 and an
// empty index.json, never replacing what another writer put there.
func (l *Layout) init() error {
	if err := l.FS.MkdirAll(l.Dir); err != nil {
		return err
	}
	empty, _ := json.Marshal(EmptyIndex())
	for _, f := range []struct {
		name string
		data []byte
	}{{"oci-layout", []byte(LayoutFile)}, {"blobs", nil}, {"index.json", empty}} {
		switch {
		case f.data == nil:
			if err := l.FS.MkdirAll(l.blobDir()); err != nil {
				return err
			}
		case !l.has(l.path(f.name)):
			_, err := l.put(l.path(f.name), bytes.NewReader(f.data), nil, l.FS.Link)
			if err != nil && !l.has(l.path(f.name)) {
				return fmt.Errorf("making %s an OCI layout: %w", l.Dir, err)
			}
		}
	}
	return nil
}

func (l *Layout) has(name string) bool {
	_, err := l.FS.Stat(name)
	return err == nil
}

// BlobPath is where a blob lives in the layout.
func (l *Layout) BlobPath(d v1.Hash) string { return l.path("blobs", d.Algorithm, d.Hex) }

// HasBlob reports whether the layout holds a blob.
func (l *Layout) HasBlob(d v1.Hash) bool { return l.has(l.BlobPath(d)) }

// Open returns a blob's content: Layout is an archive.BlobSource.
func (l *Layout) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	return l.FS.Open(l.BlobPath(b.Digest))
}

// Lock takes the layout's exclusive lock (see takeLock), waiting while another writer,
// here or on another machine, holds it.
func (l *Layout) Lock() (unlock func(), err error) {
	return takeLock(context.Background(), l.FS, l.path(lockName), l.Waiting)
}

// writeFile writes data to name atomically: a temporary file renamed into place.
func (l *Layout) writeFile(name string, data []byte) error {
	_, err := l.put(name, bytes.NewReader(data), nil, l.FS.Rename)
	return err
}

// put writes r to a temporary file next to name, runs check on what was written, and moves
// the file to name with move (Rename replaces, Link does not); the temporary file is removed.
func (l *Layout) put(name string, r io.Reader, check func(n int64, digest string) error, move func(string, string) error) (int64, error) {
	tmp := l.FS.Join(path.Dir(name), tempPrefix+randomHex())
	h := sha256.New()
	n, err := l.FS.Create(tmp, io.TeeReader(r, h))
	if err == nil {
		err = l.FS.Sync(tmp)
	}
	if err == nil && check != nil {
		err = check(n, archive.HashOf(h).String())
	}
	if err == nil {
		err = move(tmp, name)
	}
	l.FS.Remove(tmp) // gone already after a rename
	return n, err
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func readAll(fsys FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, err
}

// LayoutFile is the content of the oci-layout file ferry writes.
const LayoutFile = `{"imageLayoutVersion":"1.0.0"}`

// Blobs lists the blobs the layout holds, with their sizes: whole files named by their
// digest, whether an image names them yet or not.
func (l *Layout) Blobs() (map[v1.Hash]int64, error) {
	entries, err := l.FS.ReadDir(l.blobDir())
	if errors.Is(err, fs.ErrNotExist) {
		return map[v1.Hash]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", l.blobDir(), err)
	}
	have := map[v1.Hash]int64{}
	for _, e := range entries {
		if h, err := v1.NewHash("sha256:" + e.Name()); err == nil && e.Mode().IsRegular() {
			have[h] = e.Size()
		}
	}
	return have, nil
}

// Inventory lists the blobs the layout holds, and the layers of every image index.json
// reaches.
func (l *Layout) Inventory() (*Inventory, error) {
	inv := NewInventory(StoreOCI)
	blobs, err := l.Blobs()
	if err != nil {
		return nil, err
	}
	inv.AddBlob(slices.Collect(maps.Keys(blobs))...)
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	return inv, l.walk(inv, idx.Manifests, 0)
}

// walk records the layers of the images descs reach, nested indexes included.
func (l *Layout) walk(inv *Inventory, descs []v1.Descriptor, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%s: indexes nested deeper than 8", l.Dir)
	}
	for _, d := range descs {
		if !l.HasBlob(d.Digest) {
			continue // a thin index: other platforms stay behind
		}
		data, err := readAll(l.FS, l.BlobPath(d.Digest), 8<<20)
		if err != nil {
			return err
		}
		var m struct {
			Manifests []v1.Descriptor `json:"manifests"`
			Config    v1.Descriptor   `json:"config"`
			Layers    []v1.Descriptor `json:"layers"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("%s: blob %s: %w", l.Dir, d.Digest, err)
		}
		if m.Manifests != nil {
			if err := l.walk(inv, m.Manifests, depth+1); err != nil {
				return err
			}
			continue
		}
		var manifest v1.Manifest
		if json.Unmarshal(data, &manifest) == nil && archive.IsArtifact(d, &manifest) {
			continue // no layers: its blobs are among those listed
		}
		cfgData, err := readAll(l.FS, l.BlobPath(m.Config.Digest), 8<<20)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var cfg v1.ConfigFile
		if err := json.Unmarshal(cfgData, &cfg); err != nil {
			return fmt.Errorf("%s: config %s: %w", l.Dir, m.Config.Digest, err)
		}
		var blobs []v1.Hash
		for _, ld := range m.Layers {
			blobs = append(blobs, ld.Digest)
		}
		inv.AddImage(cfg.RootFS.DiffIDs, blobs)
	}
	return nil
}

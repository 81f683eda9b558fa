package dedupe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/atomicfile"
)

// A Layout is an OCI image layout directory ferry writes into: blobs/sha256/<hex>,
// index.json, oci-layout. Blobs appear whole (rename), index.json is replaced atomically, and
// every change happens under an exclusive lock, so concurrent writers lose nothing.
type Layout struct {
	Dir string
}

const stagePrefix = ".ferry-stage-"

// OpenLayout opens an OCI layout directory; a missing or empty one is made a layout by the
// first commit. A directory holding anything else is refused.
func OpenLayout(dir string) (*Layout, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if len(entries) > 0 && !exists(filepath.Join(dir, "oci-layout")) {
		return nil, fmt.Errorf("%s is not empty and not an OCI image layout (no oci-layout file)", dir)
	}
	return &Layout{Dir: dir}, nil
}

// init makes the directory a layout. Call it under Lock.
func (l *Layout) init() error {
	if err := os.MkdirAll(filepath.Join(l.Dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if exists(filepath.Join(l.Dir, "oci-layout")) {
		return nil
	}
	return atomicfile.WriteFile(filepath.Join(l.Dir, "oci-layout"), []byte(LayoutFile), 0o644)
}

// BlobPath is where a blob lives in the layout.
func (l *Layout) BlobPath(d v1.Hash) string {
	return filepath.Join(l.Dir, "blobs", d.Algorithm, d.Hex)
}

// HasBlob reports whether the layout holds a blob.
func (l *Layout) HasBlob(d v1.Hash) bool { return exists(l.BlobPath(d)) }

// Open returns a blob's content: Layout is an archive.BlobSource.
func (l *Layout) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	return os.Open(l.BlobPath(b.Digest))
}

// Lock takes the layout's exclusive lock.
func (l *Layout) Lock() (unlock func(), err error) {
	return flock(filepath.Join(l.Dir, ".ferry.lock"), syscall.LOCK_EX)
}

func flock(path string, how int) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// Index reads index.json; a layout without one has an empty index.
func (l *Layout) Index() (v1.IndexManifest, error) {
	idx := EmptyIndex()
	data, err := os.ReadFile(filepath.Join(l.Dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return idx, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &idx)
	}
	if err != nil {
		return idx, fmt.Errorf("reading %s/index.json: %w", l.Dir, err)
	}
	return idx, nil
}

// WriteIndex replaces index.json.
func (l *Layout) WriteIndex(idx v1.IndexManifest) error {
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(l.Dir, "index.json"), data, 0o644)
}

// AddToIndex adds descs to index.json; an entry naming the same image replaces the old one,
// as a tag moves. Call it under Lock.
func (l *Layout) AddToIndex(descs []v1.Descriptor) error {
	idx, err := l.Index()
	if err != nil {
		return err
	}
	return l.WriteIndex(MergeIndex(idx, descs))
}

// MergeIndex returns idx with descs added; an entry naming the same image replaces the
// old one, as a tag moves. It is how any OCI layout ferry writes, local or remote, takes
// in new images.
func MergeIndex(idx v1.IndexManifest, descs []v1.Descriptor) v1.IndexManifest {
	replaced := map[string]bool{}
	for _, d := range descs {
		replaced[indexKey(d)] = true
	}
	var kept []v1.Descriptor
	for _, d := range idx.Manifests {
		if !replaced[indexKey(d)] {
			kept = append(kept, d)
		}
	}
	idx.Manifests = append(kept, descs...)
	return idx
}

// EmptyIndex is the index of a layout without index.json.
func EmptyIndex() v1.IndexManifest {
	return v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
}

// LayoutFile is the content of the oci-layout file ferry writes.
const LayoutFile = `{"imageLayoutVersion":"1.0.0"}`

func indexKey(d v1.Descriptor) string {
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if n := d.Annotations[k]; n != "" {
			return n
		}
	}
	return d.Digest.String()
}

// Inventory lists the layers of every image index.json reaches.
func (l *Layout) Inventory() (*Inventory, error) {
	idx, err := layout.ImageIndexFromPath(l.Dir)
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout %s: %w", l.Dir, err)
	}
	inv := NewInventory(StoreOCI)
	return inv, inv.AddIndex(idx)
}

// A Stage is an archive.Sink that stages a bundle's entries inside the layout. Its Commit
// takes the layout's lock, moves the verified blobs into place — a thin bundle's left-out
// blobs must already be there — and then calls the commit function given to Stage.
type Stage struct {
	l       *Layout
	dir     string
	created bool   // the layout directory did not exist before the stage
	unlock  func() // held while the stage lives: gc knows it is not stale
	commit  func(*archive.Bundle) error

	mu     sync.Mutex
	staged map[string]string // entry name → staged file
	// storeAs, when set, says which digest a blob is stored under and which staged file
	// holds it ("" for none): a pool stores uncompressed layers compressed. By default, the
	// blob's own digest and the file staged for its entry.
	storeAs func(*archive.Blob) (v1.Hash, string)

	// After Commit: bytes of blobs the layout took in, and of those it already had.
	Stored, Skipped int64
}

// Stage starts staging a bundle; commit runs under the lock after the blobs are in place.
func (l *Layout) Stage(commit func(*archive.Bundle) error) (*Stage, error) {
	created := !exists(l.Dir)
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	if !created {
		// Stale stages are removed under the layout's lock: shared, it keeps them from
		// taking this one for stale between its mkdir and its lock. A directory the stage
		// made has no stale stages, and is left without a lock file for Abort to remove.
		unlockLayout, err := flock(filepath.Join(l.Dir, ".ferry.lock"), syscall.LOCK_SH)
		if err != nil {
			return nil, err
		}
		defer unlockLayout()
	}
	dir, err := os.MkdirTemp(l.Dir, stagePrefix)
	if err != nil {
		return nil, err
	}
	unlock, err := flock(filepath.Join(dir, ".lock"), syscall.LOCK_EX)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Stage{l: l, dir: dir, created: created, unlock: unlock, commit: commit, staged: map[string]string{}}, nil
}

// Entry stages one entry.
func (s *Stage) Entry(_ context.Context, e archive.Entry, r io.Reader) error {
	f, err := os.CreateTemp(s.dir, "blob-")
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.staged[e.Name] = f.Name()
	s.mu.Unlock()
	return nil
}

// Abort drops what was staged, and the layout directory if the stage made it.
func (s *Stage) Abort(error) {
	s.close()
	if s.created {
		os.Remove(s.l.Dir)
	}
}

func (s *Stage) close() {
	os.RemoveAll(s.dir)
	s.unlock()
}

// Commit stores the bundle's blobs and runs the commit function, under the layout's lock.
func (s *Stage) Commit(_ context.Context, b *archive.Bundle) error {
	defer s.close()
	blobs := b.Reachable()
	// Refused before the lock file and init touch the directory, so that Abort can remove
	// a directory the stage made; checked again under the lock, which gc takes.
	if err := s.holdsMissing(blobs); err != nil {
		return err
	}
	unlock, err := s.l.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.holdsMissing(blobs); err != nil {
		return err
	}
	if err := s.l.init(); err != nil {
		return err
	}
	for _, blob := range blobs {
		if blob.Missing {
			continue
		}
		digest, staged := s.target(blob)
		dst := s.l.BlobPath(digest)
		if exists(dst) {
			s.Skipped += blob.Size
			continue
		}
		s.Stored += blob.Size
		switch {
		case staged != "":
			err = os.Rename(staged, dst)
		case blob.Data != nil:
			err = atomicfile.WriteFile(dst, blob.Data, 0o644)
		default:
			err = fmt.Errorf("nothing staged for it")
		}
		if err != nil {
			return fmt.Errorf("storing blob %s: %w", blob.Digest, err)
		}
	}
	if err := atomicfile.SyncDir(filepath.Join(s.l.Dir, "blobs", "sha256")); err != nil {
		return err
	}
	return s.commit(b)
}

// target returns the digest a blob is stored under and the file staged for it, if any.
func (s *Stage) target(b *archive.Blob) (v1.Hash, string) {
	if s.storeAs != nil {
		return s.storeAs(b)
	}
	return b.Digest, s.stagedFile(b)
}

func (s *Stage) stagedFile(b *archive.Blob) string {
	if b.Path == "" {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.staged[b.Path]
}

// holdsMissing checks that the layout holds every blob a thin bundle leaves out.
func (s *Stage) holdsMissing(blobs []*archive.Blob) error {
	for _, blob := range blobs {
		if d, _ := s.target(blob); blob.Missing && !s.l.HasBlob(d) {
			return fmt.Errorf("%w: the bundle leaves out %s and %s does not have it: add the bundle it comes from first", archive.ErrMissingBlob, blob.Digest, s.l.Dir)
		}
	}
	return nil
}

// staleStages returns the stage directories no live process holds.
func (l *Layout) staleStages() ([]string, error) {
	entries, err := os.ReadDir(l.Dir)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), stagePrefix) {
			continue
		}
		dir := filepath.Join(l.Dir, e.Name())
		if unlock, err := flock(filepath.Join(dir, ".lock"), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			unlock()
			stale = append(stale, dir)
		}
	}
	return stale, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

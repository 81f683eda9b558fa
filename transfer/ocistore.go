package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/atomicfile"
)

// ociStore loads bundles into an OCI image layout directory. Entries are staged inside the
// layout; Commit moves verified blobs into blobs/sha256 (renames: each appears whole), then
// replaces index.json atomically, under a lock so concurrent loads do not lose entries.
type ociStore struct {
	dir   string
	stage string

	mu     sync.Mutex
	staged map[string]string // entry name → staged file
	images []Loaded
}

func newOCIStore(dir string) (*ociStore, error) {
	if err := checkLayoutDir(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(dir, ".ferry-stage-")
	if err != nil {
		return nil, err
	}
	return &ociStore{dir: dir, stage: stage, staged: map[string]string{}}, nil
}

// checkLayoutDir refuses a directory that holds something other than an OCI layout.
func checkLayoutDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("%s is not empty and not an OCI image layout (no oci-layout file)", dir)
	}
	return nil
}

func (s *ociStore) Entry(_ context.Context, e archive.Entry, r io.Reader) error {
	f, err := os.CreateTemp(s.stage, "blob-")
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

func (s *ociStore) Abort(error) { os.RemoveAll(s.stage) }

func (s *ociStore) loaded() []Loaded { return s.images }

func (s *ociStore) Commit(_ context.Context, b *archive.Bundle) error {
	defer os.RemoveAll(s.stage)
	unlock, err := lockDir(s.dir)
	if err != nil {
		return err
	}
	defer unlock()
	blobDir := filepath.Join(s.dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return err
	}
	blobs := b.Reachable()
	for _, blob := range blobs {
		if blob.Missing && !exists(filepath.Join(blobDir, blob.Digest.Hex)) {
			return fmt.Errorf("%w: the bundle leaves out %s and %s does not have it: load the bundle it comes from first", archive.ErrMissingBlob, blob.Digest, s.dir)
		}
	}
	for _, blob := range blobs {
		dst := filepath.Join(blobDir, blob.Digest.Hex)
		if blob.Missing || exists(dst) {
			continue
		}
		if staged, ok := s.staged[blob.Path]; ok && blob.Path != "" {
			err = os.Rename(staged, dst)
		} else {
			err = atomicfile.WriteFile(dst, blob.Data, 0o644)
		}
		if err != nil {
			return fmt.Errorf("storing blob %s: %w", blob.Digest, err)
		}
	}
	if err := atomicfile.SyncDir(blobDir); err != nil {
		return err
	}
	if !exists(filepath.Join(s.dir, "oci-layout")) {
		if err := atomicfile.WriteFile(filepath.Join(s.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return err
		}
	}
	if err := mergeIndex(filepath.Join(s.dir, "index.json"), b.Index.Manifests); err != nil {
		return err
	}
	s.images = loadedImages(b)
	return nil
}

// mergeIndex adds descs to the index.json at path; an entry naming the same image name
// replaces the old one, as a tag moves.
func mergeIndex(path string, descs []v1.Descriptor) error {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &idx); err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	key := func(d v1.Descriptor) string {
		if n := d.Annotations["io.containerd.image.name"]; n != "" {
			return n
		}
		if n := d.Annotations["org.opencontainers.image.ref.name"]; n != "" {
			return n
		}
		return d.Digest.String()
	}
	replaced := map[string]bool{}
	for _, d := range descs {
		replaced[key(d)] = true
	}
	kept := idx.Manifests[:0]
	for _, d := range idx.Manifests {
		if !replaced[key(d)] {
			kept = append(kept, d)
		}
	}
	idx.Manifests = append(kept, descs...)
	out, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, out, 0o644)
}

// lockDir takes an exclusive lock on dir for the length of a commit.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".ferry.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

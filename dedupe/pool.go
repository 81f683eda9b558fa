package dedupe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A Pool is an OCI image layout that records bundles and stores each of their blobs once,
// however many bundles share it. A layer that arrives compressed (a registry's) is stored as
// it came, so its digest survives; one that arrives uncompressed (docker's) is stored gzipped,
// and decompresses to exactly the bytes that came in. The pool keeps the manifests as they
// came, for exports, and beside them, for a manifest naming uncompressed layers, one naming
// the compressed blobs, which index.json lists: same config, same diffIDs, same image ID.
// An exported bundle has exactly the original manifests, digests and image IDs. The price:
// the same layer saved once from docker and once from a registry is two blobs.
//
// A layer that came uncompressed and whose content the pool mostly holds (a rebuild's) is
// stored as content instead (package content): a recipe over whole layers and packs the pool
// holds, and a pack of its new chunks (pool_content.go). Where the chunks of each whole layer
// and pack lie is kept in ferry/content, so that adds index the pool without reading it.
//
// Records (ferry/bundles/NAME.json) are the truth; index.json is rebuilt from them on every
// change, listing each image as NAME/TAG, so skopeo and crane read images straight from the
// pool (oci:DIR:NAME/TAG); images with layers stored as content are left out, and ferry's
// readers rebuild them. A change writes blobs, then the record, then index.json, each
// atomically and under the layout's lock: a pool killed at any point holds at worst unreferenced
// blobs and a stale stage, which the next add or gc clears.
type Pool struct {
	*Layout
}

// Errors of pools.
var (
	// ErrNoBundle: the pool records no bundle of that name and no image of that tag.
	ErrNoBundle = errors.New("not in the pool")
	// ErrDamaged: Check found problems.
	ErrDamaged = errors.New("the pool is damaged")
)

// InitPool makes dir a pool; an existing pool is left as it is.
func InitPool(dir string) (*Pool, error) {
	l, err := OpenLayout(dir)
	if err != nil {
		return nil, err
	}
	p := &Pool{l}
	if err := os.MkdirAll(p.recordsDir(), 0o755); err != nil {
		return nil, err
	}
	unlock, err := p.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := l.init(); err != nil {
		return nil, err
	}
	if !exists(filepath.Join(dir, "index.json")) {
		return p, p.writeIndex()
	}
	return p, nil
}

// OpenPool opens a pool made by InitPool.
func OpenPool(dir string) (*Pool, error) {
	if !exists(filepath.Join(dir, "ferry", "bundles")) || !exists(filepath.Join(dir, "oci-layout")) {
		return nil, fmt.Errorf("%s is not a ferry pool: make one with `ferry pool init %s`", dir, dir)
	}
	return &Pool{&Layout{Dir: dir, FS: LocalFS{}}}, nil
}

package dedupe

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Remove drops a bundle's record; gc then removes the blobs no other bundle needs.
func (p *Pool) Remove(name string) error {
	unlock, err := p.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(p.recordPath(name)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("bundle %s: %w", name, ErrNoBundle)
	} else if err != nil {
		return err
	}
	return p.writeIndex()
}

// GC removes every blob no record needs, and stale stages; with dryRun it only says which.
func (p *Pool) GC(dryRun bool) (removed []v1.Hash, bytes int64, err error) {
	unlock, err := p.Lock()
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	if !dryRun {
		if _, err := p.repairIndex(); err != nil {
			return nil, 0, err
		}
	}
	return p.gc(dryRun)
}

// gc is GC under the lock.
func (p *Pool) gc(dryRun bool) (removed []v1.Hash, bytes int64, err error) {
	records, err := p.Records()
	if err != nil {
		return nil, 0, err
	}
	needed := map[string]bool{}
	for _, r := range records {
		for d := range r.stored() {
			needed[d] = true
		}
	}
	dir := filepath.Join(p.Dir, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, err
	}
	since, live := p.LiveSince()
	for _, e := range entries {
		if needed[e.Name()] || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, 0, err
		}
		if live && !info.ModTime().Before(since) {
			continue // a live add may have put it in place: its commit will name it
		}
		removed = append(removed, v1.Hash{Algorithm: "sha256", Hex: e.Name()})
		bytes += info.Size()
		if !dryRun {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return removed, bytes, err
			}
		}
	}
	if !dryRun {
		err = p.removeStale()
	}
	if err == nil && !dryRun {
		err = p.forgetContent(records)
	}
	return removed, bytes, err
}

// forgetContent removes from the pool's content cache what it keeps of parts no record
// builds on any more.
func (p *Pool) forgetContent(records []*Record) error {
	kept := map[string]bool{}
	for _, r := range records {
		for _, part := range r.bases() {
			kept[part.Sum] = true
		}
	}
	dir := filepath.Join(p.contentDir(), "sha256")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !kept[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Package atomicfile writes files that appear whole or not at all: a temp file in the target
// directory, written, synced, closed, renamed over the target, and the directory synced.
package atomicfile

import (
	"os"
	"path/filepath"

	"github.com/ferrytool/ferry/internal/leftover"
)

// A File is being written in place of a target path.
type File struct {
	*os.File
	target string
	done   bool
}

// Create starts writing a file that will replace path on Commit.
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	leftover.Clean(dir, "."+base+".tmp-") // a killed run's
	f, err := os.CreateTemp(dir, leftover.Pattern("."+base+".tmp-"))
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &File{File: f, target: path}, nil
}

// Commit makes the written content visible at the target path.
func (f *File) Commit() error {
	if f.done {
		return os.ErrClosed
	}
	f.done = true
	err := f.Sync()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.target)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return SyncDir(filepath.Dir(f.target))
}

// Abort drops what was written; the target path is untouched. It is a no-op after Commit.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.Name())
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// SyncDir flushes a directory's entries to disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package dedupe

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrytool/ferry/internal/atomicfile"
)

// An FS is the little a Layout needs of a file system: this machine's (LocalFS), or a host's
// over SFTP. Names are slash-separated paths as the file system takes them.
type FS interface {
	Open(name string) (io.ReadCloser, error)
	// Create makes name, which must not exist, writes r into it and returns the bytes
	// written. A failed Create leaves no file.
	Create(name string, r io.Reader) (int64, error)
	// Rename replaces newname with oldname atomically.
	Rename(oldname, newname string) error
	// Link makes newname another name of oldname, failing if newname exists.
	Link(oldname, newname string) error
	Remove(name string) error
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.FileInfo, error)
	MkdirAll(name string) error
	// Join joins path elements the file system's way.
	Join(elem ...string) string
	// Sync makes a file's content, or a directory's entries, durable where the file system
	// can.
	Sync(name string) error
	// Touch sets name's modification time to now: a lock's heartbeat.
	Touch(name string) error
}

// LocalFS is this machine's file system.
type LocalFS struct{}

func (LocalFS) Open(name string) (io.ReadCloser, error) { return os.Open(name) }

func (LocalFS) Create(name string, r io.Reader) (n int64, err error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	n, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
	return n, err
}

func (LocalFS) Rename(oldname, newname string) error  { return os.Rename(oldname, newname) }
func (LocalFS) Link(oldname, newname string) error    { return os.Link(oldname, newname) }
func (LocalFS) Remove(name string) error              { return os.Remove(name) }
func (LocalFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }
func (LocalFS) MkdirAll(name string) error            { return os.MkdirAll(name, 0o755) }
func (LocalFS) Join(elem ...string) string            { return filepath.Join(elem...) }
func (LocalFS) Sync(name string) error                { return atomicfile.SyncDir(name) }

func (LocalFS) Touch(name string) error {
	now := time.Now()
	return os.Chtimes(name, now, now)
}

func (LocalFS) ReadDir(name string) ([]fs.FileInfo, error) {
	entries, err := os.ReadDir(name)
	var out []fs.FileInfo
	for _, e := range entries {
		info, ierr := e.Info()
		if errors.Is(ierr, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if ierr != nil {
			return nil, ierr
		}
		out = append(out, info)
	}
	return out, err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

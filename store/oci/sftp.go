package oci

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
)

// DefaultStall is how long a call over SFTP may go without progress.
const DefaultStall = 2 * time.Minute

// maxListed bounds a directory listing over SFTP.
const maxListed = 1_000_000

// sftpFS is a host's file system over SFTP (sshd's sftp subsystem): no shell and no command,
// every name is only ever a path. The server is not taken at its word: every call ends when
// it makes no progress for stall (the session is closed, and every later call fails too),
// listings are bounded, and a file written is checked to hold what was written.
type sftpFS struct {
	c     *sftp.Client
	stall time.Duration
}

// newSFTPFS is the file system c reaches; stall 0 means DefaultStall.
func newSFTPFS(c *sftp.Client, stall time.Duration) *sftpFS {
	return &sftpFS{c: c, stall: cmp.Or(stall, DefaultStall)}
}

// A StallError ends a call over SFTP that made no progress in time.
type StallError struct {
	What  string // "stat blobs/sha256"
	After time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("the host's sftp server made no progress on %s for %s", e.What, e.After)
}

// watch runs call, closing the session when it tells of no progress (through the function
// it is given) within s.stall.
func (s *sftpFS) watch(what string, call func(progress func()) error) error {
	var stalled atomic.Bool
	t := time.AfterFunc(s.stall, func() {
		stalled.Store(true)
		s.c.Close()
	})
	err := call(func() { t.Reset(s.stall) })
	t.Stop()
	if stalled.Load() {
		return &StallError{What: what, After: s.stall}
	}
	return err
}

// do runs call, which makes no progress it can tell of, under watch.
func (s *sftpFS) do(what string, call func() error) error {
	return s.watch(what, func(func()) error { return call() })
}

func (s *sftpFS) Open(name string) (io.ReadCloser, error) {
	var f *sftp.File
	err := s.do("open "+name, func() (err error) { f, err = s.c.Open(name); return err })
	if err != nil {
		return nil, err
	}
	return &sftpFile{f: f, s: s}, nil
}

// sftpFile is a file being read, each read under the deadline.
type sftpFile struct {
	f *sftp.File
	s *sftpFS
}

func (f *sftpFile) Read(p []byte) (n int, err error) {
	err = f.s.do("reading "+f.f.Name(), func() error { n, err = f.f.Read(p); return err })
	return n, err
}

func (f *sftpFile) Close() error { return f.s.do("closing "+f.f.Name(), f.f.Close) }

func (s *sftpFS) Create(name string, r io.Reader) (n int64, err error) {
	created := false // the file is ours to remove
	err = s.watch("writing "+name, func(progress func()) error {
		f, err := s.c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		created = true
		n, err = f.ReadFrom(progressReader{r, progress})
		if err == nil {
			err = f.Chmod(0o644) // sftp creates files 0666 less the server's umask; a layout's are 0644
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fi, err := s.c.Stat(name)
		if err == nil && fi.Size() != n {
			err = fmt.Errorf("the host's sftp server kept %d of the %d bytes written to %s", fi.Size(), n, name)
		}
		return err
	})
	if err != nil && created {
		s.c.Remove(name)
	}
	return n, err
}

// progressReader tells of each read that moved bytes.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

func (s *sftpFS) Rename(oldname, newname string) error {
	return s.do("renaming "+oldname, func() error { return s.c.PosixRename(oldname, newname) })
}

func (s *sftpFS) Link(oldname, newname string) error {
	return s.do("linking "+oldname, func() error { return s.c.Link(oldname, newname) })
}

func (s *sftpFS) Remove(name string) error {
	return s.do("removing "+name, func() error { return s.c.Remove(name) })
}

func (s *sftpFS) Stat(name string) (fi fs.FileInfo, err error) {
	err = s.do("stat "+name, func() error { fi, err = s.c.Stat(name); return err })
	return fi, err
}

func (s *sftpFS) ReadDir(name string) (list []fs.FileInfo, err error) {
	err = s.do("listing "+name, func() error { list, err = s.c.ReadDir(name); return err })
	if err == nil && len(list) > maxListed {
		return nil, fmt.Errorf("the host's sftp server lists %d entries in %s, more than the %d ferry takes", len(list), name, maxListed)
	}
	return list, err
}

func (s *sftpFS) MkdirAll(name string) error {
	return s.do("making "+name, func() error { return s.c.MkdirAll(name) })
}

func (s *sftpFS) Join(elem ...string) string { return path.Join(elem...) }

// Sync syncs a file where the server can (fsync@openssh.com); SFTP cannot sync a directory.
func (s *sftpFS) Sync(name string) error {
	return s.do("syncing "+name, func() error {
		f, err := s.c.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			return nil
		}
		if err := f.Sync(); err != nil && !errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
			return err
		}
		return nil
	})
}

func (s *sftpFS) Touch(name string) error {
	now := time.Now()
	return s.do("touching "+name, func() error { return s.c.Chtimes(name, now, now) })
}

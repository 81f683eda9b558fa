package oci

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/pkg/sftp"
)

// sftpFS is a host's file system over SFTP (sshd's sftp subsystem): no shell and no command,
// every name is only ever a path.
type sftpFS struct{ c *sftp.Client }

func (s sftpFS) Open(name string) (io.ReadCloser, error) { return s.c.Open(name) }

func (s sftpFS) Create(name string, r io.Reader) (n int64, err error) {
	f, err := s.c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return 0, err
	}
	n, err = f.ReadFrom(r)
	if err == nil {
		err = f.Chmod(0o644) // sftp creates files 0666 less the server's umask; a layout's are 0644
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.c.Remove(name)
	}
	return n, err
}

func (s sftpFS) Rename(oldname, newname string) error       { return s.c.PosixRename(oldname, newname) }
func (s sftpFS) Link(oldname, newname string) error         { return s.c.Link(oldname, newname) }
func (s sftpFS) Remove(name string) error                   { return s.c.Remove(name) }
func (s sftpFS) Stat(name string) (fs.FileInfo, error)      { return s.c.Stat(name) }
func (s sftpFS) ReadDir(name string) ([]fs.FileInfo, error) { return s.c.ReadDir(name) }
func (s sftpFS) MkdirAll(name string) error                 { return s.c.MkdirAll(name) }
func (s sftpFS) Join(elem ...string) string                 { return path.Join(elem...) }

// Sync syncs a file where the server can (fsync@openssh.com); SFTP cannot sync a directory.
func (s sftpFS) Sync(name string) error {
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
}

func (s sftpFS) Touch(name string) error {
	now := time.Now()
	return s.c.Chtimes(name, now, now)
}

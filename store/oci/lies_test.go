package oci

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
)

// shortWrites is an sftp server's file writing that keeps only the first 1 KiB of a file and
// answers every write as done.
type shortWrites struct{ sftp.FileWriter }

func (s shortWrites) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	w, err := s.FileWriter.Filewrite(r)
	return keepHead{w}, err
}

type keepHead struct{ io.WriterAt }

func (k keepHead) WriteAt(p []byte, off int64) (int, error) {
	if keep := 1024 - off; keep > 0 {
		k.WriterAt.WriteAt(p[:min(int64(len(p)), keep)], off) //nolint:errcheck // it lies anyway
	}
	return len(p), nil
}

// silentLists is an sftp server that never answers a stat or a listing.
type silentLists struct{ release chan struct{} }

func (s silentLists) Filelist(*sftp.Request) (sftp.ListerAt, error) {
	<-s.release
	return nil, errors.New("released")
}

// lyingSFTP serves h over a pipe and returns the file system a client of it reaches, with
// a stall of a second.
func lyingSFTP(t *testing.T, h sftp.Handlers) *sftpFS {
	t.Helper()
	client, server := net.Pipe()
	srv := sftp.NewRequestServer(server, h)
	go srv.Serve() //nolint:errcheck // ends with the pipe
	c, err := sftp.NewClientPipe(client, client, sftp.UseConcurrentWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); srv.Close() })
	return newSFTPFS(c, time.Second)
}

// TestLyingSFTP: an sftp server that keeps less than it was written and says it kept all is
// caught, and the file removed; one that answers nothing ends at the deadline, naming what
// was waited for.
func TestLyingSFTP(t *testing.T) {
	t.Run("short writes", func(t *testing.T) {
		h := sftp.InMemHandler()
		h.FilePut = shortWrites{h.FilePut}
		fsys := lyingSFTP(t, h)
		_, err := fsys.Create("/blob", bytes.NewReader(make([]byte, 64<<10)))
		if err == nil || !strings.Contains(err.Error(), "kept 1024 of the 65536 bytes") {
			t.Errorf("create: %v, want the short file caught", err)
		}
		if _, err := fsys.Stat("/blob"); err == nil {
			t.Error("the short file stayed")
		}
	})
	t.Run("silence", func(t *testing.T) {
		h := sftp.InMemHandler()
		release := make(chan struct{})
		defer close(release)
		h.FileList = silentLists{release}
		fsys := lyingSFTP(t, h)
		var stall *StallError
		if _, err := fsys.ReadDir("/blobs/sha256"); !errors.As(err, &stall) || !strings.Contains(err.Error(), "listing /blobs/sha256") {
			t.Errorf("listing: %v, want it ended for making no progress", err)
		}
	})
}

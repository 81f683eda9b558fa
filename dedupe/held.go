package dedupe

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/ferrytool/ferry/archive"
)

// A held file takes the entries a Stage holds back (those under archive.HeldMax the metadata
// read so far does not list), in order (archive.WriteHeld); the commit copies out those the
// bundle uses.
type held struct {
	fsys FS
	name string
	pw   *io.PipeWriter
	done chan error
	buf  []byte
}

// hold starts the held file name.
func (l *Layout) hold(name string) *held {
	pr, pw := io.Pipe()
	h := &held{fsys: l.FS, name: name, pw: pw, done: make(chan error, 1)}
	go func() {
		_, err := l.FS.Create(name, pr)
		pr.CloseWithError(cmp.Or(err, errors.New("the held file was closed")))
		h.done <- err
	}()
	return h
}

func (h *held) add(e archive.Entry, r io.Reader) error {
	if h.buf == nil {
		h.buf = make([]byte, 64<<10)
	}
	return archive.WriteHeld(h.pw, e, r, h.buf)
}

// finish ends the held file.
func (h *held) finish() error {
	if h.pw == nil {
		return nil
	}
	h.pw.Close()
	h.pw = nil
	return <-h.done
}

func (h *held) close() {
	if h.pw != nil {
		h.pw.CloseWithError(errors.New("the stage ended"))
		<-h.done
		h.pw = nil
	}
	h.fsys.Remove(h.name)
}

// unhold copies the held entries the bundle uses out into temporary files of their own, in
// one pass over the held file, each checked against its digest (names are known by a hash).
func (s *Stage) unhold(blobs []*archive.Blob) error {
	if s.held == nil {
		return nil
	}
	if err := s.held.finish(); err != nil {
		return err
	}
	uses := map[archive.NameKey]*archive.Blob{}
	for _, blob := range blobs {
		if _, placed := s.placed[blob.Digest.Hex]; blob.Present() && blob.Path != "" && s.staged[blob.Path] == "" && !placed {
			uses[archive.KeyOf(blob.Path)] = blob
		}
	}
	if len(uses) == 0 {
		return nil
	}
	f, err := s.l.FS.Open(s.held.name)
	if err != nil {
		return err
	}
	defer f.Close()
	return archive.ScanHeld(f, uses, func(blob *archive.Blob, size int64, body io.Reader) error {
		tmp := s.temp()
		h := sha256.New()
		if _, err := s.l.FS.Create(tmp, io.TeeReader(body, h)); err != nil {
			return err
		}
		s.staged[blob.Path] = tmp
		if got := archive.HashOf(h); size != blob.Size || got != blob.Digest {
			return fmt.Errorf("staging blob %s: the held entry hashes to %s", blob.Digest, got)
		}
		return nil
	})
}

package dedupe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A Stage is an archive.Sink that takes a bundle into the layout. An entry named by its
// digest (blobs/sha256/<hex>) is put in place as soon as its content hashed to it: the
// blobs a cut transfer wrote whole stay and count the next time, and nothing names them
// before Commit. Other entries (a legacy docker save's layer.tar) wait under a temporary
// name until the bundle says what they are. Commit then takes the layout's lock, checks
// that a thin bundle's left-out blobs are there, puts the rest in place and calls the
// commit function given to Stage. The stage's own lock file, touched while it lives,
// tells gc and later stages that its temporary files and fresh blobs are not leftovers.
type Stage struct {
	l       *Layout
	id      string
	created bool   // the layout directory did not exist before the stage
	unlock  func() // the stage's lock file
	commit  func(*archive.Bundle) error

	mu     sync.Mutex
	staged map[string]string // entry name → temporary file
	placed map[string]int64  // blobs this stage put in place, by hex digest
	held   *held             // small entries the bundle may not use, in one file
	// storeAs, when set, says which blobs are stored as other blobs, and which temporary
	// files hold those ("" when the layout has them already): a pool stores uncompressed
	// layers compressed, or as content.
	storeAs func(*archive.Blob) ([]placing, bool)

	// After Commit: bytes of blobs the layout took in, and of those it already had.
	Stored, Skipped int64
}

// Stage starts taking a bundle; commit runs under the lock after the blobs are in place.
func (l *Layout) Stage(commit func(*archive.Bundle) error) (*Stage, error) {
	created := !l.has(l.Dir)
	if err := l.init(); err != nil {
		if created {
			l.removeTree()
		}
		return nil, err
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + randomHex()
	unlock, err := takeLock(context.Background(), l.FS, l.path(stagePrefix+id), nil)
	if err != nil {
		if created {
			l.removeTree()
		}
		return nil, err
	}
	return &Stage{l: l, id: id, created: created, unlock: unlock, commit: commit,
		staged: map[string]string{}, placed: map[string]int64{}}, nil
}

// Entry takes one entry: in place if it is a blob whose content matches its name, else
// under a temporary name until Commit.
func (s *Stage) Entry(_ context.Context, e archive.Entry, r io.Reader) error {
	if !e.Listed && e.Size < archive.HeldMax {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.held == nil {
			s.held = s.l.hold(s.temp())
		}
		return s.held.add(e, r)
	}
	want, named := strings.CutPrefix(e.Name, "blobs/sha256/")
	tmp := s.temp()
	h := sha256.New()
	n, err := s.l.FS.Create(tmp, io.TeeReader(r, h))
	if err != nil {
		return err
	}
	got := archive.HashOf(h).Hex
	s.mu.Lock()
	defer s.mu.Unlock()
	// A blob the metadata already read lists, whose content matches its name, is put in
	// place now (synced first: it is durable under its digest or not there at all). Others
	// wait, unsynced, until the bundle says whether it uses them. A blob already there stays
	// staged: the stage that put it there may yet abort. Linked, not renamed, so that of two
	// stages taking the same blob at once only one puts it in place.
	final := s.l.FS.Join(s.l.blobDir(), got)
	if e.Listed && named && got == want && s.l.FS.Sync(tmp) == nil && s.l.FS.Link(tmp, final) == nil {
		s.l.FS.Remove(tmp)
		s.placed[got] = n
		return nil
	}
	s.staged[e.Name] = tmp
	return nil
}

// Abort drops what was staged, the blobs the stage put in place, and the layout directory
// if the stage made it. (Over a cut connection nothing can be removed: the blobs written
// whole stay, and count the next time.)
func (s *Stage) Abort(error) {
	for d := range s.placed {
		s.l.FS.Remove(s.l.FS.Join(s.l.blobDir(), d))
	}
	s.close()
	if s.created {
		s.l.removeTree()
	}
}

// removeTree removes a layout directory a stage made, with what the stage put in it.
func (l *Layout) removeTree() {
	for _, dir := range []string{l.blobDir(), l.Dir} {
		entries, _ := l.FS.ReadDir(dir)
		for _, e := range entries {
			l.FS.Remove(l.FS.Join(dir, e.Name()))
		}
	}
	for _, dir := range []string{l.blobDir(), l.path("blobs"), l.Dir} {
		l.FS.Remove(dir)
	}
}

func (s *Stage) close() {
	if s.held != nil {
		s.held.close()
	}
	for _, tmp := range s.staged {
		s.l.FS.Remove(tmp)
	}
	s.unlock()
}

// Commit stores the bundle's blobs and runs the commit function, under the layout's lock.
func (s *Stage) Commit(_ context.Context, b *archive.Bundle) error {
	defer s.close()
	blobs := b.Reachable()
	// Refused before the lock file touches the directory, so that Abort can remove a
	// directory the stage made; checked again under the lock, which gc takes.
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
	if err := s.unhold(blobs); err != nil {
		return err
	}
	for _, blob := range blobs {
		if blob.Missing {
			continue
		}
		if err := s.store(blob); err != nil {
			return fmt.Errorf("storing blob %s: %w", blob.Digest, err)
		}
	}
	if err := s.l.FS.Sync(s.l.blobDir()); err != nil {
		return err
	}
	if err := s.commit(b); err != nil {
		return err
	}
	return s.l.removeStale()
}

// A placing is a blob stored in place of another, and the temporary file that holds it
// ("" when the layout has it already).
type placing struct {
	digest v1.Hash
	tmp    string
}

// store puts one verified blob in place, counting it as stored or already there. Blobs are
// linked into place, so that a stage taking the same blob at once counts it only once.
func (s *Stage) store(blob *archive.Blob) error {
	if as, ok := s.storedAs(blob); ok {
		size := blob.Size // counted once, for the first of the blobs stored in its place
		for _, pl := range as {
			if err := s.link(pl.tmp, s.l.BlobPath(pl.digest), size); err != nil {
				return err
			}
			size = 0
		}
		return nil
	}
	dst := s.l.BlobPath(blob.Digest)
	if _, ok := s.placed[blob.Digest.Hex]; ok {
		if !s.l.has(dst) {
			return errors.New("it was removed while the bundle was read (a gc?): take the bundle in again")
		}
		s.Stored += blob.Size
		return nil
	}
	src, ok := s.staged[blob.Path]
	if !ok || blob.Path == "" {
		if blob.Data == nil {
			return errors.New("the bundle did not carry it")
		}
		src = s.temp()
		s.staged[src] = src // removed by close
		if _, err := s.l.FS.Create(src, bytes.NewReader(blob.Data)); err != nil {
			return err
		}
	}
	if err := s.l.FS.Sync(src); err != nil {
		return err
	}
	return s.link(src, dst, blob.Size)
}

// link puts src in place at dst, counting size as stored or, when dst is there, skipped.
func (s *Stage) link(src, dst string, size int64) error {
	err := s.l.FS.Link(src, dst)
	switch {
	case err == nil:
		s.Stored += size
	case s.l.has(dst):
		s.Skipped += size
	case s.l.FS.Rename(src, dst) == nil: // a file system without hard links; under the lock
		s.Stored += size
	default:
		return err
	}
	return nil
}

// stagedTemp returns a new name for a temporary file of the stage, removed when it ends.
func (s *Stage) stagedTemp() string {
	tmp := s.temp()
	s.mu.Lock()
	s.staged[tmp] = tmp
	s.mu.Unlock()
	return tmp
}

// temp returns a new name for a temporary file of the stage.
func (s *Stage) temp() string { return s.l.FS.Join(s.l.blobDir(), tempPrefix+s.id+"-"+randomHex()) }

func (s *Stage) storedAs(blob *archive.Blob) ([]placing, bool) {
	if s.storeAs == nil {
		return nil, false
	}
	return s.storeAs(blob)
}

// holdsMissing checks that the layout holds every blob a thin bundle leaves out.
func (s *Stage) holdsMissing(blobs []*archive.Blob) error {
	for _, blob := range blobs {
		if !blob.Missing {
			continue
		}
		as, ok := s.storedAs(blob)
		if !ok {
			as = []placing{{digest: blob.Digest}}
		}
		for _, pl := range as {
			if !s.l.HasBlob(pl.digest) {
				return fmt.Errorf("%w: the bundle leaves out %s and %s does not have it: add the bundle it comes from first", archive.ErrMissingBlob, blob.Digest, s.l.Dir)
			}
		}
	}
	return nil
}

package transfer

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/pkg/sftp"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/sshconn"
)

// remoteTempPrefix starts the names of blobs and index files being written in a remote
// layout; a cut connection may leave them behind, and a later send removes the old ones.
const remoteTempPrefix = ".ferry-tmp-"

// staleTemp is how old a temporary file must be before a send takes it for another's
// leftover rather than a concurrent send's work in progress.
const staleTemp = time.Hour

// A remoteLayout is an OCI image layout directory on a host, written over SFTP. It is not
// a dedupe.Layout over another file system: that one stages a whole bundle before it moves
// blobs into place under a flock, and SFTP has no locks; here each blob goes to a temporary
// name next to its final one and is renamed (posix-rename@openssh.com) once its digest
// checks out, so the blobs sent before a cut connection stay and count on the next send.
type remoteLayout struct {
	sftp *sftp.Client
	dir  string
	host string
}

func (l *remoteLayout) blobDir() string { return path.Join(l.dir, "blobs", "sha256") }
func (l *remoteLayout) blobPath(d v1.Hash) string {
	return path.Join(l.dir, "blobs", d.Algorithm, d.Hex)
}

// open makes dir a layout if it is missing or empty, and refuses a directory that holds
// anything else.
func (l *remoteLayout) open() error {
	entries, err := l.sftp.ReadDir(l.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return l.errorf("reading %s: %w", l.dir, err)
	}
	hasLayout := false
	for _, e := range entries {
		hasLayout = hasLayout || e.Name() == "oci-layout"
	}
	if len(entries) > 0 && !hasLayout {
		return l.errorf("%s is not empty and not an OCI image layout (no oci-layout file)", l.dir)
	}
	if err := l.sftp.MkdirAll(l.blobDir()); err != nil {
		return l.errorf("creating %s: %w", l.blobDir(), err)
	}
	if !hasLayout {
		return l.writeFile(path.Join(l.dir, "oci-layout"), []byte(dedupe.LayoutFile))
	}
	return nil
}

func (l *remoteLayout) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{l.host}, args...)...)
}

// blobs lists the blobs the layout holds, by digest with their sizes, and removes stale
// temporary files.
func (l *remoteLayout) blobs() (map[v1.Hash]int64, error) {
	entries, err := l.sftp.ReadDir(l.blobDir())
	if err != nil {
		return nil, l.errorf("listing %s: %w", l.blobDir(), err)
	}
	have := map[v1.Hash]int64{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), remoteTempPrefix) {
			if time.Since(e.ModTime()) > staleTemp {
				l.sftp.Remove(path.Join(l.blobDir(), e.Name()))
			}
			continue
		}
		if h, err := v1.NewHash("sha256:" + e.Name()); err == nil && e.Mode().IsRegular() {
			have[h] = e.Size()
		}
	}
	return have, nil
}

// sendBlob reads blob from im and writes it with putBlob.
func (l *remoteLayout) sendBlob(ctx context.Context, im *Images, blob *archive.Blob, n func(int64)) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if blob.Data != nil {
		return l.putBlob(blob, bytes.NewReader(blob.Data), n)
	}
	rc, err := im.src.Open(ctx, blob)
	if err != nil {
		return fmt.Errorf("reading blob %s: %w", blob.Digest, err)
	}
	defer rc.Close()
	return l.putBlob(blob, rc, n)
}

// putBlob writes blob from r to a temporary name, checks its size and digest, and renames
// it into place. n counts the bytes written.
func (l *remoteLayout) putBlob(blob *archive.Blob, r io.Reader, n func(int64)) error {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h), report: n}
	err := l.atomicWrite(l.blobPath(blob.Digest), cr, func() error {
		if cr.n != blob.Size {
			return fmt.Errorf("%w: blob %s is %d bytes, want %d", archive.ErrDigestMismatch, blob.Digest, cr.n, blob.Size)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != blob.Digest.String() {
			return fmt.Errorf("blob %s: %w: content hashes to %s", blob.Digest, archive.ErrDigestMismatch, got)
		}
		return nil
	})
	if err != nil {
		return l.errorf("storing blob %s: %w", blob.Digest, err)
	}
	return nil
}

func (l *remoteLayout) writeFile(name string, data []byte) error {
	if err := l.atomicWrite(name, bytes.NewReader(data), nil); err != nil {
		return l.errorf("writing %s: %w", name, err)
	}
	return nil
}

// atomicWrite writes r to a temporary file in name's directory, syncs it if the server
// can, runs check, and renames the file to name; the temporary file is removed on any
// error.
func (l *remoteLayout) atomicWrite(name string, r io.Reader, check func() error) (err error) {
	var suffix [8]byte
	rand.Read(suffix[:])
	tmp := path.Join(path.Dir(name), remoteTempPrefix+path.Base(name)+"-"+hex.EncodeToString(suffix[:]))
	f, err := l.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			l.sftp.Remove(tmp)
		}
	}()
	_, err = f.ReadFrom(r)
	if err == nil {
		if serr := f.Sync(); serr != nil && !errors.Is(serr, sftp.ErrSSHFxOpUnsupported) {
			err = serr
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && check != nil {
		err = check()
	}
	if err == nil {
		f.Chmod(0o644) // sftp creates files 0666 less the server's umask; the layout's are 0644
		err = l.sftp.PosixRename(tmp, name)
	}
	return err
}

// index reads index.json; a layout without one has an empty index.
func (l *remoteLayout) index() (v1.IndexManifest, error) {
	idx := dedupe.EmptyIndex()
	f, err := l.sftp.Open(path.Join(l.dir, "index.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err == nil {
		defer f.Close()
		err = json.NewDecoder(f).Decode(&idx)
	}
	if err != nil {
		return idx, l.errorf("reading %s/index.json: %w", l.dir, err)
	}
	return idx, nil
}

// indexLock is the file whose exclusive creation locks a remote layout's index.json.
// Holders keep it for one read and one write of index.json; a lock seen unchanged for
// staleLock is a cut connection's leftover (timed here: the host's clock may be off).
const indexLock = ".ferry-index.lock"

var staleLock = 15 * time.Second // a variable for the tests

// addToIndex merges manifests into index.json under the layout's lock, so concurrent sends
// to one layout lose no entry. (ferry on the host itself locks a layout with flock, which
// SFTP cannot take; the two do not exclude each other.)
func (l *remoteLayout) addToIndex(ctx context.Context, manifests []v1.Descriptor) error {
	unlock, err := l.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := l.index()
	if err != nil {
		return err
	}
	data, err := json.Marshal(dedupe.MergeIndex(idx, manifests))
	if err != nil {
		return err
	}
	return l.writeFile(path.Join(l.dir, "index.json"), data)
}

// lock creates indexLock exclusively, waiting while another send holds it and removing a
// stale one.
func (l *remoteLayout) lock(ctx context.Context) (unlock func(), err error) {
	name := path.Join(l.dir, indexLock)
	var seen, since time.Time // the lock's mtime when first seen, and since when it has not changed
	retried := false          // creating failed once with no lock in the way
	for {
		f, err := l.sftp.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err == nil {
			f.Close()
			return func() { l.sftp.Remove(name) }, nil
		}
		// OpenSSH's sftp-server reports an existing file as a plain failure: look.
		fi, serr := l.sftp.Stat(name)
		switch {
		case errors.Is(serr, fs.ErrNotExist) && !retried:
			retried = true // released meanwhile, maybe
			continue
		case serr != nil || !fi.Mode().IsRegular(): // no lock in the way: creating itself fails
			return nil, l.errorf("locking %s: %w", name, err)
		case !fi.ModTime().Equal(seen):
			seen, since = fi.ModTime(), time.Now()
		case time.Since(since) > staleLock:
			if err := l.sftp.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, l.errorf("removing the stale lock %s: %w", name, err)
			}
			continue
		}
		retried = false
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sendOCI writes what the host's OCI layout dir lacks of im over SFTP: the layers first,
// then configs, then manifests, and index.json last, so what index.json names is always
// whole. A blob the layout holds is not sent again, so sending again after a cut
// connection resumes where it stopped.
func sendOCI(ctx context.Context, res *HostResult, c *sshconn.Client, dir string, src *pending, progress func(sent, total int64)) error {
	s, err := c.SFTP()
	if err != nil {
		return err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	l := &remoteLayout{sftp: s, dir: dir, host: res.Host}
	if err := l.open(); err != nil {
		return err
	}
	have, err := l.blobs()
	if err != nil {
		return err
	}
	im, err := src.wait(ctx)
	if err != nil {
		return err
	}
	held := func(b *archive.Blob) bool {
		size, ok := have[b.Digest]
		return ok && size == b.Size
	}
	b := im.Bundle.Thin(func(img *archive.Image, i int) bool { return held(img.Layers[i].Blob) })
	res.Layers, res.Skipped = countLayers(b)
	var todo []*archive.Blob
	var total int64
	for _, blob := range blobOrder(b) {
		res.Full += blob.Size
		if blob.Present() && !held(blob) {
			todo = append(todo, blob)
			total += blob.Size
		}
	}
	progress(0, total)
	for _, blob := range todo {
		sent := res.Sent
		err := l.sendBlob(ctx, im, blob, func(n int64) { res.Sent = sent + n; progress(res.Sent, total) })
		if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return fmt.Errorf("%w; the blobs written whole stay in %s, and sending again sends only the rest", err, dir)
		}
	}
	if err := l.addToIndex(ctx, b.Index.Manifests); err != nil {
		return err
	}
	for _, img := range loadedImages(b) {
		res.Loaded = append(res.Loaded, img.Ref)
	}
	return nil
}

// blobOrder returns b's reachable blobs with the layers first, in the images' order, then
// the configs, then the rest (manifests and indexes): a blob is written after the blobs it
// refers to.
func blobOrder(b *archive.Bundle) []*archive.Blob {
	var out []*archive.Blob
	seen := map[*archive.Blob]bool{}
	add := func(blob *archive.Blob) {
		if !seen[blob] {
			seen[blob] = true
			out = append(out, blob)
		}
	}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			add(l.Blob)
		}
	}
	for _, img := range b.Images {
		add(img.Config)
	}
	var rest []*archive.Blob
	for _, blob := range b.Reachable() {
		if !seen[blob] {
			rest = append(rest, blob)
		}
	}
	// An index refers to manifests: write manifests before indexes.
	for _, index := range []bool{false, true} {
		for _, blob := range rest {
			if isIndex(blob) == index {
				add(blob)
			}
		}
	}
	return out
}

// isIndex reports whether blob is an image index: it lists manifests.
func isIndex(blob *archive.Blob) bool {
	var m struct {
		Manifests json.RawMessage `json:"manifests"`
	}
	if blob.Data == nil || json.Unmarshal(blob.Data, &m) != nil {
		return false
	}
	return m.Manifests != nil
}

// countingReader counts the bytes read through it and reports the count.
type countingReader struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.report(c.n)
	}
	return n, err
}

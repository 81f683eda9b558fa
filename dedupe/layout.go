package dedupe

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
)

// A Layout is an OCI image layout directory ferry writes into: blobs/sha256/<hex>,
// index.json, oci-layout, on this machine or on a host over SFTP (its FS). A blob appears
// under its digest only once its content hashed to it, and index.json, replaced atomically
// under the layout's lock, names an image only once all its blobs are there; so concurrent
// writers lose nothing, and a cut transfer leaves whole blobs that count the next time.
type Layout struct {
	Dir string
	FS  FS
	// Waiting, if set, is told when a lock another writer holds is waited for, and why.
	Waiting func(string)
}

// Names ferry gives its own files in a layout: never foreign content.
const (
	lockName    = ".ferry.lock"
	stagePrefix = ".ferry-stage-"
	tempPrefix  = ".ferry-tmp-"
)

// OpenLayout opens an OCI layout directory on this machine (see OpenLayoutFS).
func OpenLayout(dir string) (*Layout, error) { return OpenLayoutFS(LocalFS{}, dir) }

// OpenLayoutFS opens an OCI layout directory; a missing or empty one (ferry's own leftovers
// aside) is made a layout by the first commit. A directory holding anything else is refused.
func OpenLayoutFS(fsys FS, dir string) (*Layout, error) {
	l := &Layout{Dir: dir, FS: fsys}
	entries, err := fsys.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	foreign := false
	for _, e := range entries {
		switch name := e.Name(); {
		case name == "oci-layout":
			return l, nil
		case !strings.HasPrefix(name, ".ferry"):
			foreign = true
		}
	}
	if foreign {
		return nil, fmt.Errorf("%s is not empty and not an OCI image layout (no oci-layout file)", dir)
	}
	return l, nil
}

func (l *Layout) path(elem ...string) string { return l.FS.Join(append([]string{l.Dir}, elem...)...) }
func (l *Layout) blobDir() string            { return l.path("blobs", "sha256") }

// init makes the directory a layout: oci-layout first (so that another ferry opening the
// directory meanwhile sees a layout, or only ferry's own files), then blobs/sha256 and an
// empty index.json, never replacing what another writer put there.
func (l *Layout) init() error {
	if err := l.FS.MkdirAll(l.Dir); err != nil {
		return err
	}
	empty, _ := json.Marshal(EmptyIndex())
	for _, f := range []struct {
		name string
		data []byte
	}{{"oci-layout", []byte(LayoutFile)}, {"blobs", nil}, {"index.json", empty}} {
		switch {
		case f.data == nil:
			if err := l.FS.MkdirAll(l.blobDir()); err != nil {
				return err
			}
		case !l.has(l.path(f.name)):
			_, err := l.put(l.path(f.name), bytes.NewReader(f.data), nil, l.FS.Link)
			if err != nil && !l.has(l.path(f.name)) {
				return fmt.Errorf("making %s an OCI layout: %w", l.Dir, err)
			}
		}
	}
	return nil
}

func (l *Layout) has(name string) bool {
	_, err := l.FS.Stat(name)
	return err == nil
}

// BlobPath is where a blob lives in the layout.
func (l *Layout) BlobPath(d v1.Hash) string { return l.path("blobs", d.Algorithm, d.Hex) }

// HasBlob reports whether the layout holds a blob.
func (l *Layout) HasBlob(d v1.Hash) bool { return l.has(l.BlobPath(d)) }

// Open returns a blob's content: Layout is an archive.BlobSource.
func (l *Layout) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	return l.FS.Open(l.BlobPath(b.Digest))
}

// Lock takes the layout's exclusive lock (see takeLock), waiting while another writer,
// here or on another machine, holds it.
func (l *Layout) Lock() (unlock func(), err error) {
	return takeLock(context.Background(), l.FS, l.path(lockName), l.Waiting)
}

// writeFile writes data to name atomically: a temporary file renamed into place.
func (l *Layout) writeFile(name string, data []byte) error {
	_, err := l.put(name, bytes.NewReader(data), nil, l.FS.Rename)
	return err
}

// put writes r to a temporary file next to name, runs check on what was written, and moves
// the file to name with move (Rename replaces, Link does not); the temporary file is removed.
func (l *Layout) put(name string, r io.Reader, check func(n int64, digest string) error, move func(string, string) error) (int64, error) {
	tmp := l.FS.Join(path.Dir(name), tempPrefix+randomHex())
	h := sha256.New()
	n, err := l.FS.Create(tmp, io.TeeReader(r, h))
	if err == nil {
		err = l.FS.Sync(tmp)
	}
	if err == nil && check != nil {
		err = check(n, archive.HashOf(h).String())
	}
	if err == nil {
		err = move(tmp, name)
	}
	l.FS.Remove(tmp) // gone already after a rename
	return n, err
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Index reads index.json; a layout without one has an empty index.
func (l *Layout) Index() (v1.IndexManifest, error) {
	idx := EmptyIndex()
	data, err := readAll(l.FS, l.path("index.json"), 64<<20)
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &idx)
	}
	if err != nil {
		return idx, fmt.Errorf("reading %s/index.json: %w", l.Dir, err)
	}
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	return idx, nil
}

func readAll(fsys FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, err
}

// WriteIndex replaces index.json.
func (l *Layout) WriteIndex(idx v1.IndexManifest) error {
	if idx.Manifests == nil {
		idx.Manifests = []v1.Descriptor{}
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return l.writeFile(l.path("index.json"), data)
}

// AddToIndex adds descs to index.json; an entry naming the same image replaces the old one,
// as a tag moves. Call it under Lock.
func (l *Layout) AddToIndex(descs []v1.Descriptor) error {
	idx, err := l.Index()
	if err != nil {
		return err
	}
	return l.WriteIndex(MergeIndex(idx, descs))
}

// MergeIndex returns idx with descs added; an entry naming the same image replaces the
// old one, as a tag moves.
func MergeIndex(idx v1.IndexManifest, descs []v1.Descriptor) v1.IndexManifest {
	replaced := map[string]bool{}
	for _, d := range descs {
		replaced[indexKey(d)] = true
	}
	kept := []v1.Descriptor{}
	for _, d := range idx.Manifests {
		if !replaced[indexKey(d)] {
			kept = append(kept, d)
		}
	}
	idx.Manifests = append(kept, descs...)
	return idx
}

// EmptyIndex is the index of a layout without index.json.
func EmptyIndex() v1.IndexManifest {
	return v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
}

// LayoutFile is the content of the oci-layout file ferry writes.
const LayoutFile = `{"imageLayoutVersion":"1.0.0"}`

func indexKey(d v1.Descriptor) string {
	for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
		if n := d.Annotations[k]; n != "" {
			return n
		}
	}
	return d.Digest.String()
}

// Blobs lists the blobs the layout holds, with their sizes: whole files named by their
// digest, whether an image names them yet or not.
func (l *Layout) Blobs() (map[v1.Hash]int64, error) {
	entries, err := l.FS.ReadDir(l.blobDir())
	if errors.Is(err, fs.ErrNotExist) {
		return map[v1.Hash]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", l.blobDir(), err)
	}
	have := map[v1.Hash]int64{}
	for _, e := range entries {
		if h, err := v1.NewHash("sha256:" + e.Name()); err == nil && e.Mode().IsRegular() {
			have[h] = e.Size()
		}
	}
	return have, nil
}

// Inventory lists the blobs the layout holds, and the layers of every image index.json
// reaches.
func (l *Layout) Inventory() (*Inventory, error) {
	inv := NewInventory(StoreOCI)
	blobs, err := l.Blobs()
	if err != nil {
		return nil, err
	}
	for d := range blobs {
		inv.AddBlob(d)
	}
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	return inv, l.walk(inv, idx.Manifests, 0)
}

// walk records the layers of the images descs reach, nested indexes included.
func (l *Layout) walk(inv *Inventory, descs []v1.Descriptor, depth int) error {
	if depth > 8 {
		return fmt.Errorf("%s: indexes nested deeper than 8", l.Dir)
	}
	for _, d := range descs {
		if !l.HasBlob(d.Digest) {
			continue // a thin index: other platforms stay behind
		}
		data, err := readAll(l.FS, l.BlobPath(d.Digest), 8<<20)
		if err != nil {
			return err
		}
		var m struct {
			Manifests []v1.Descriptor `json:"manifests"`
			Config    v1.Descriptor   `json:"config"`
			Layers    []v1.Descriptor `json:"layers"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("%s: blob %s: %w", l.Dir, d.Digest, err)
		}
		if m.Manifests != nil {
			if err := l.walk(inv, m.Manifests, depth+1); err != nil {
				return err
			}
			continue
		}
		cfgData, err := readAll(l.FS, l.BlobPath(m.Config.Digest), 8<<20)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var cfg v1.ConfigFile
		if err := json.Unmarshal(cfgData, &cfg); err != nil {
			return fmt.Errorf("%s: config %s: %w", l.Dir, m.Config.Digest, err)
		}
		var blobs []v1.Hash
		for _, ld := range m.Layers {
			blobs = append(blobs, ld.Digest)
		}
		inv.AddImage(cfg.RootFS.DiffIDs, blobs)
	}
	return nil
}

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
	// storeAs, when set, says which blobs are stored under another digest, and which
	// temporary file holds them ("" when the layout has them already): a pool stores
	// uncompressed layers compressed.
	storeAs func(*archive.Blob) (digest v1.Hash, tmp string, ok bool)

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

// store puts one verified blob in place, counting it as stored or already there. Blobs are
// linked into place, so that a stage taking the same blob at once counts it only once.
func (s *Stage) store(blob *archive.Blob) error {
	if d, tmp, ok := s.storedAs(blob); ok {
		return s.link(tmp, s.l.BlobPath(d), blob.Size)
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

// temp returns a new name for a temporary file of the stage.
func (s *Stage) temp() string { return s.l.FS.Join(s.l.blobDir(), tempPrefix+s.id+"-"+randomHex()) }

func (s *Stage) storedAs(blob *archive.Blob) (v1.Hash, string, bool) {
	if s.storeAs == nil {
		return v1.Hash{}, "", false
	}
	return s.storeAs(blob)
}

// holdsMissing checks that the layout holds every blob a thin bundle leaves out.
func (s *Stage) holdsMissing(blobs []*archive.Blob) error {
	for _, blob := range blobs {
		d, _, ok := s.storedAs(blob)
		if !ok {
			d = blob.Digest
		}
		if blob.Missing && !s.l.HasBlob(d) {
			return fmt.Errorf("%w: the bundle leaves out %s and %s does not have it: add the bundle it comes from first", archive.ErrMissingBlob, blob.Digest, s.l.Dir)
		}
	}
	return nil
}

// LiveSince returns when the oldest live stage started, if one lives: gc keeps the blobs
// written since, which a live stage may have put in place before its commit names them.
func (l *Layout) LiveSince() (time.Time, bool) {
	var oldest time.Time
	live := false
	l.stages(func(name string, fi fs.FileInfo, isStale bool) {
		if isStale {
			return
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(name, stagePrefix), "-")
		if ns, err := strconv.ParseInt(id, 36, 64); err == nil {
			if t := time.Unix(0, ns); !live || t.Before(oldest) {
				oldest, live = t, true
			}
		}
	})
	return oldest.Add(-time.Minute), live // a minute for the clocks of other machines
}

// stages calls fn for each stage lock file in the layout.
func (l *Layout) stages(fn func(name string, fi fs.FileInfo, stale bool)) {
	entries, _ := l.FS.ReadDir(l.Dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), stagePrefix) {
			fn(e.Name(), e, stale(l.FS, l.path(e.Name()), e))
		}
	}
}

// removeStale removes what stages of killed processes and cut connections left: their lock
// files and temporary files. Call it under Lock.
func (l *Layout) removeStale() error {
	// The temporary files first, then the stages: a stage takes its lock file before it makes
	// any, so one that starts in between has made none of those listed.
	type temp struct {
		dir string
		e   fs.FileInfo
	}
	var temps []temp
	for _, dir := range []string{l.Dir, l.blobDir()} {
		entries, _ := l.FS.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tempPrefix) {
				temps = append(temps, temp{dir, e})
			}
		}
	}
	live := map[string]bool{}
	l.stages(func(name string, fi fs.FileInfo, isStale bool) {
		id := strings.TrimPrefix(name, stagePrefix)
		if isStale {
			l.FS.Remove(l.path(name))
		} else {
			live[id] = true
		}
	})
	for _, t := range temps {
		rest := strings.TrimPrefix(t.e.Name(), tempPrefix)
		i := strings.LastIndexByte(rest, '-')
		if i > 0 && live[rest[:i]] {
			continue
		}
		if i > 0 || time.Since(t.e.ModTime()) > staleAge {
			l.FS.Remove(l.FS.Join(t.dir, t.e.Name())) // a dead stage's, or an old orphan
		}
	}
	return nil
}

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

// Package mem is a store held in memory, as restic's mem backend is a backend: the fake the
// orchestration is unit-tested against with no daemon. A Store keeps blobs, as an OCI layout
// or a containerd content store does: it takes thin bundles whose blobs it holds, keeps
// each whole blob it was given even when the bundle fails, and resumes a blob a cut left
// partly written. A Daemon loads docker-archive streams as docker does: nothing from a
// stream cut short, layers kept by chain (steps), or complete images only (docker on the
// containerd image store). Faults make either fail or slow where a test says. Tags, ID and
// Cat look at what it holds without ferry, as docker's own tools look at docker: it passes
// the store conformance suite (package store/storetest) as the real kinds do.
package mem

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	pathpkg "path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
)

// Faults are what a store does wrong, set before it is used.
type Faults struct {
	// CutAfter, when not 0, cuts the store, as a connection is cut, once its receives and
	// loads have read that many bytes: every read fails with ErrCut from then on, until
	// faults are set again.
	CutAfter int64
	// Rate, when not 0, is the bytes per second a receive or load reads at at most.
	Rate int64
	// Inventory, if set, is the error taking stock fails with.
	Inventory error
	// Forget makes loads lie: each reports the images it loaded, and the store keeps
	// nothing of them.
	Forget bool
}

// ErrCut is the error of a receive or load cut by Faults.CutAfter.
var ErrCut = errors.New("mem: connection cut")

// A Store is a store of blobs held in memory.
type Store struct {
	name string

	mu      sync.Mutex
	faults  Faults
	read    int64 // bytes read by receives and loads since faults were set
	blobs   map[v1.Hash][]byte
	partial map[string][]byte // what a cut left of an entry, by its name
	images  []held
	seed    *archive.Bundle // the images Open and Save read
	loads   int
}

// A held image is one the store holds.
type held struct {
	tags    []string
	id      v1.Hash
	diffIDs []v1.Hash
	blobs   []v1.Hash // its layers' blobs
	step    bool      // labelled store.StepLabel
}

// New makes an empty store of blobs, named name.
func New(name string) *Store {
	return &Store{name: name, blobs: map[v1.Hash][]byte{}, partial: map[string][]byte{}}
}

func (s *Store) String() string { return s.name }
func (s *Store) Close() error   { return nil }

// SetFaults sets what the store does wrong from now on.
func (s *Store) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults, s.read = f, 0
}

// Seed reads a bundle into the store, as a load would, and keeps it as what Open and Save
// read.
func (s *Store) Seed(ctx context.Context, bundle []byte) error {
	r := s.receiver(false)
	b, err := archive.Read(ctx, bytes.NewReader(bundle), r, archive.ReadOptions{})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seed = b
	return nil
}

// Tags lists the tags of the images the store holds, sorted.
func (s *Store) Tags() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tags []string
	for _, h := range s.images {
		tags = append(tags, h.tags...)
	}
	slices.Sort(tags)
	return tags
}

// Steps counts the step images the store holds.
func (s *Store) Steps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.images {
		if h.step {
			n++
		}
	}
	return n
}

// Loads counts the bundles the store committed.
func (s *Store) Loads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

// ID returns the ID of the image tagged tag, if the store holds one.
func (s *Store) ID(tag string) (v1.Hash, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.tagged(tag)
	return h.id, ok
}

// Cat returns the content of file path in the image tagged tag, as a container of the
// image reads it: from the topmost layer that has it. It fails when the store lacks a
// blob of the image's layers, as such an image would not run.
func (s *Store) Cat(tag, path string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.tagged(tag)
	if !ok {
		return "", fmt.Errorf("%s: no such image: %s", s.name, tag)
	}
	name := strings.TrimPrefix(pathpkg.Clean("/"+path), "/")
	whiteout := pathpkg.Join(pathpkg.Dir(name), ".wh."+pathpkg.Base(name))
	var layers [][]byte
	for _, d := range h.blobs {
		data, ok := s.blobs[d]
		if !ok {
			return "", fmt.Errorf("%s: %s lacks layer blob %s", s.name, tag, d)
		}
		layers = append(layers, data)
	}
	for _, data := range slices.Backward(layers) {
		var r io.Reader = bytes.NewReader(data)
		if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return "", err
			}
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return "", fmt.Errorf("%s: reading a layer of %s: %w", s.name, tag, err)
			}
			switch strings.TrimPrefix(pathpkg.Clean("/"+hdr.Name), "/") {
			case whiteout:
				return "", fmt.Errorf("%s: %s: no such file", tag, path)
			case name:
				b, err := io.ReadAll(tr)
				return string(b), err
			}
		}
	}
	return "", fmt.Errorf("%s: %s: no such file", tag, path)
}

// tagged returns the image tagged tag. The caller holds s.mu.
func (s *Store) tagged(tag string) (held, bool) {
	for _, h := range s.images {
		if slices.Contains(h.tags, tag) {
			return h, true
		}
	}
	return held{}, false
}

func (s *Store) Inventory(context.Context) (*dedupe.Inventory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.Inventory != nil {
		return nil, s.faults.Inventory
	}
	inv := dedupe.NewInventory(dedupe.StoreOCI)
	inv.AddBlob(slices.Collect(maps.Keys(s.blobs))...)
	for _, h := range s.images {
		inv.AddImage(h.diffIDs, h.blobs)
	}
	return inv, nil
}

// Receive takes a bundle's blobs as they come: each whole blob is kept at once (it stays
// when the bundle fails), the images once the bundle is verified.
func (s *Store) Receive(context.Context) (store.Receiver, error) {
	r := s.receiver(true)
	r.faulty = true
	return r, nil
}

func (s *Store) Open(_ context.Context, refs []string, _ store.ReadOptions) (*store.Images, error) {
	b, err := s.seeded(refs)
	if err != nil {
		return nil, err
	}
	return store.NewImages(b, source{s}, nil), nil
}

// seeded returns the images of the seed that refs name.
func (s *Store) seeded(refs []string) (*archive.Bundle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seed == nil {
		return nil, fmt.Errorf("%s holds no images to read", s.name)
	}
	b := *s.seed
	b.Images, b.Index.Manifests = nil, nil
	for _, ref := range refs {
		i := slices.IndexFunc(s.seed.Images, func(img *archive.Image) bool { return slices.Contains(img.RepoTags, ref) })
		if i < 0 {
			return nil, fmt.Errorf("%s: no such image: %s", s.name, ref)
		}
		img := s.seed.Images[i]
		b.Images = append(b.Images, img)
		for _, d := range s.seed.Index.Manifests {
			if d.Digest == img.Manifest.Digest {
				b.Index.Manifests = append(b.Index.Manifests, d)
			}
		}
	}
	return &b, nil
}

// source serves the store's blobs.
type source struct{ s *Store }

func (src source) Open(_ context.Context, b *archive.Blob) (io.ReadCloser, error) {
	src.s.mu.Lock()
	defer src.s.mu.Unlock()
	data, ok := src.s.blobs[b.Digest]
	if !ok {
		return nil, fmt.Errorf("%w: %s", archive.ErrMissingBlob, b.Digest)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// faulty returns a reader of r that the store's faults apply to.
func (s *Store) faulty(r io.Reader) io.Reader { return &faulty{s: s, r: r} }

// faulty reads r as the store's faults say.
type faulty struct {
	s     *Store
	r     io.Reader
	start time.Time
	n     int64
}

func (f *faulty) Read(p []byte) (int, error) {
	f.s.mu.Lock()
	cut, rate, left := f.s.faults.CutAfter, f.s.faults.Rate, f.s.faults.CutAfter-f.s.read
	f.s.mu.Unlock()
	if cut > 0 && left <= 0 {
		return 0, ErrCut
	}
	if cut > 0 && int64(len(p)) > left {
		p = p[:left]
	}
	if f.start.IsZero() {
		f.start = time.Now()
	}
	n, err := f.r.Read(p)
	f.n += int64(n)
	f.s.mu.Lock()
	f.s.read += int64(n)
	f.s.mu.Unlock()
	if rate > 0 {
		time.Sleep(time.Until(f.start.Add(time.Duration(f.n * int64(time.Second) / rate))))
	}
	return n, err
}

// receiver stages a bundle's entries and commits its images.
type receiver struct {
	s       *Store
	faulty  bool // the store's faults apply to the entries
	blobs   bool // each whole blob entry is kept at once, and a cut one resumed (a content store)
	chains  bool // a layer left out must be held by chain (a daemon), not by blob
	whole   bool // the store takes complete images only
	staged  map[string][]byte
	resumed int64
	loaded  []store.Loaded
}

func (s *Store) receiver(blobs bool) *receiver {
	return &receiver{s: s, blobs: blobs, staged: map[string][]byte{}}
}

func (r *receiver) Resumed() int64         { return r.resumed }
func (r *receiver) Loaded() []store.Loaded { return r.loaded }

// blobName is the name of a blob entry: blobs/sha256/HEX.
var blobName = regexp.MustCompile(`^blobs/sha256/([0-9a-f]{64})$`)

func (r *receiver) Entry(_ context.Context, e archive.Entry, rd io.Reader) error {
	var buf bytes.Buffer
	if r.blobs {
		r.s.mu.Lock()
		part := r.s.partial[e.Name]
		r.s.mu.Unlock()
		// What a cut left of the entry is read and dropped: the store holds it.
		if n := int64(len(part)); n > 0 && n <= e.Size {
			if _, err := io.CopyN(&buf, rd, n); err != nil {
				return err
			}
			r.resumed += n
		}
	}
	if r.faulty {
		rd = r.s.faulty(rd)
	}
	if _, err := io.Copy(&buf, rd); err != nil {
		if r.blobs {
			r.s.mu.Lock()
			r.s.partial[e.Name] = buf.Bytes()
			r.s.mu.Unlock()
		}
		return err
	}
	r.staged[e.Name] = buf.Bytes()
	if m := blobName.FindStringSubmatch(e.Name); r.blobs && m != nil {
		if sum := sha256.Sum256(buf.Bytes()); hex.EncodeToString(sum[:]) == m[1] {
			r.s.mu.Lock()
			r.s.blobs[v1.Hash{Algorithm: "sha256", Hex: m[1]}] = buf.Bytes()
			delete(r.s.partial, e.Name)
			r.s.mu.Unlock()
		}
	}
	return nil
}

func (r *receiver) Commit(_ context.Context, b *archive.Bundle) error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	for _, img := range b.Images {
		for i, l := range img.Layers {
			if l.Present() {
				continue
			}
			if r.whole {
				return fmt.Errorf("%w: %s takes complete images only", archive.ErrMissingBlob, r.s.name)
			}
			if !r.s.holds(img, i, r.chains) {
				return fmt.Errorf("%w: %s lacks layer %s", archive.ErrMissingBlob, r.s.name, l.DiffID)
			}
		}
	}
	r.loaded = store.LoadedImages(b)
	if r.s.faults.Forget {
		return nil
	}
	for _, blob := range b.Reachable() {
		if !blob.Present() {
			continue
		}
		data := blob.Data
		if data == nil {
			data = r.staged[blob.Path]
		}
		r.s.blobs[blob.Digest] = data
	}
	for _, img := range b.Images {
		h := held{tags: img.RepoTags, id: img.ID(), diffIDs: img.DiffIDs()}
		for _, l := range img.Layers {
			h.blobs = append(h.blobs, l.Digest)
		}
		if cfg := img.ConfigFile(); cfg != nil {
			_, h.step = cfg.Config.Labels[store.StepLabel]
		}
		r.s.add(h)
	}
	r.s.loads++
	return nil
}

func (r *receiver) Abort(error) {}

// add adds an image, as a store names what it loads: its tags move to it from the images
// that had them, and an image the store holds already is held once, with every tag.
func (s *Store) add(h held) {
	for i := range s.images {
		s.images[i].tags = slices.DeleteFunc(slices.Clone(s.images[i].tags), func(tag string) bool {
			return slices.Contains(h.tags, tag)
		})
	}
	if i := slices.IndexFunc(s.images, func(o held) bool { return o.id == h.id }); i >= 0 {
		s.images[i].tags = append(s.images[i].tags, h.tags...)
		return
	}
	s.images = append(s.images, h)
}

// holds reports whether the store holds layer i of img: by its chain (the layers under it
// too), or by its blob.
func (s *Store) holds(img *archive.Image, i int, chains bool) bool {
	if !chains {
		_, ok := s.blobs[img.Layers[i].Digest]
		return ok
	}
	want := img.DiffIDs()[:i+1]
	return slices.ContainsFunc(s.images, func(h held) bool {
		return len(h.diffIDs) > i && slices.Equal(h.diffIDs[:i+1], want)
	})
}

// An Unpacker is a store of blobs that unpacks the layers it keeps, as containerd does: it is
// better sent layers compressed (a store.Unpacker).
type Unpacker struct{ *Store }

// NewUnpacker makes an empty unpacking store named name.
func NewUnpacker(name string) *Unpacker { return &Unpacker{New(name)} }

// LayerBlobs says which of the layers it holds as a blob, and whether gzip-compressed.
func (u *Unpacker) LayerBlobs(_ context.Context, diffIDs []v1.Hash) (map[v1.Hash]store.LayerBlob, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[v1.Hash]store.LayerBlob{}
	for _, h := range u.images {
		for i, d := range h.diffIDs {
			data, ok := u.blobs[h.blobs[i]]
			if ok && slices.Contains(diffIDs, d) {
				out[d] = store.LayerBlob{Digest: h.blobs[i], Size: int64(len(data)), Gzip: bytes.HasPrefix(data, []byte{0x1f, 0x8b})}
			}
		}
	}
	return out, nil
}

// Layers returns the blobs the images tagged tag hold their layers in.
func (s *Store) Layers(tag string) []v1.Hash {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.images {
		if slices.Contains(h.tags, tag) {
			return h.blobs
		}
	}
	return nil
}

// An Image is an image a store holds, as a daemon lists it.
type Image struct {
	ID      v1.Hash
	Tags    []string
	DiffIDs []v1.Hash
	Step    bool // labelled store.StepLabel
}

// Images lists the images the store holds.
func (s *Store) Images() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	var images []Image
	for _, h := range s.images {
		images = append(images, Image{ID: h.id, Tags: slices.Clone(h.tags), DiffIDs: slices.Clone(h.diffIDs), Step: h.step})
	}
	return images
}

// Remove forgets the image of ID id, as docker rmi does; it reports whether the store held
// one.
func (s *Store) Remove(id v1.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.images)
	s.images = slices.DeleteFunc(s.images, func(h held) bool { return h.id == id })
	return len(s.images) < n
}

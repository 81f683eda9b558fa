package dedupe

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/pgzip"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/atomicfile"
)

// How a pool compresses: gzip, which every consumer of an OCI layout reads, at ferry's
// default level. The same layer always gives the same compressed blob.
const packLevel = compress.DefaultLevel

// A Stored names a blob the pool keeps in place of another.
type Stored struct {
	Digest string `json:"digest"` // hex
	Size   int64  `json:"size"`
}

// ociTypes maps docker layer media types to the OCI ones for the same bytes.
var ociTypes = map[types.MediaType]types.MediaType{
	types.DockerLayer:             types.OCILayer,
	types.DockerUncompressedLayer: types.OCIUncompressedLayer,
	types.DockerForeignLayer:      types.OCIRestrictedLayer,
}

// A packed is a blob compressed into a file ("" when the pool has it) and, when the pool
// stores it as content, that form: its parts staged in temporary files (by hex digest).
type packed struct {
	path string
	raw  v1.Hash // what was compressed (a bundle's blob: known at its commit)
	Stored
	content *ContentLayer
	parts   map[string]string
	// chunks are where the chunks of the layer (stored whole) or of its pack lie: what the
	// pool's content cache keeps of it.
	chunks content.Chunks
}

// placings are the blobs the pool stores in place of p's: its gzip, or its recipe and pack.
func (p *packed) placings() []placing {
	if p.content == nil {
		return []placing{{sha256Hex(p.Digest), p.path}}
	}
	out := []placing{{sha256Hex(p.content.Recipe.Digest), p.parts[p.content.Recipe.Digest]}}
	if pk := p.content.Pack; pk != nil {
		out = append(out, placing{sha256Hex(pk.Digest), p.parts[pk.Digest]})
	}
	return out
}

// pack compresses r into a new file at path; the caller hashes r.
func pack(path string, r io.Reader) (*packed, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	p, err := packTo(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	p.path = path
	return p, nil
}

func packTo(f *os.File, r io.Reader) (*packed, error) {
	pk, err := archive.Compress(f, r, packLevel)
	if err != nil {
		return nil, err
	}
	return &packed{Stored: Stored{Digest: pk.Digest.Hex, Size: pk.Size}}, f.Sync()
}

func sha256Hex(hexDigest string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: hexDigest} }

// isTar reports whether head, the first bytes of an entry, starts a tar archive.
func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// Entry stages one entry, compressing it as it streams in when it is an uncompressed tar,
// and encoding it over the content the pool holds, to store it as content where that is
// much smaller. A layer the pool already holds (its entry name says its digest) is not
// compressed again.
func (a *Adding) Entry(ctx context.Context, e archive.Entry, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<16)
	head, _ := br.Peek(512)
	if !isTar(head) {
		return a.Stage.Entry(ctx, e, br)
	}
	if p, ok := a.known[entryDigest(e.Name)]; ok && a.holds(p) {
		a.mu.Lock()
		a.packed[e.Name] = p
		a.mu.Unlock()
		_, err := io.Copy(io.Discard, br)
		return err
	}
	tmp, recipeTmp, packTmp := a.Stage.stagedTemp(), a.Stage.stagedTemp(), a.Stage.stagedTemp()
	enc := a.index.encode(ctx, recipeTmp, packTmp)
	p, err := pack(tmp, io.TeeReader(br, enc))
	if werr := enc.wait(err); err == nil && werr != nil {
		err = fmt.Errorf("encoding the layer as content: %w", werr)
	}
	if err != nil {
		return err
	}
	p.chunks = enc.enc.Tar // its diffID, the blob's digest, is known at the commit
	if p.content = enc.content(a.index, p.Size); p.content != nil {
		p.chunks = enc.enc.Pack
		p.parts = map[string]string{enc.recipe.Digest: recipeTmp, enc.pack.Digest: packTmp}
	}
	a.mu.Lock()
	a.packed[e.Name] = p
	a.mu.Unlock()
	return nil
}

// holds reports whether every blob the pool stores p as is there.
func (a *Adding) holds(p *packed) bool {
	for _, pl := range p.placings() {
		if !exists(a.Stage.l.BlobPath(pl.digest)) {
			return false
		}
	}
	return true
}

// entryDigest returns the hex digest an entry's name states (blobs/sha256/<hex>), or "".
func entryDigest(name string) string {
	if dir, file := filepath.Split(name); dir == "blobs/sha256/" && len(file) == 64 {
		return file
	}
	return ""
}

// Commit stores the bundle: the uncompressed layers it carried compressed or as content,
// anything else as it came. An entry that looked like a tar but is no uncompressed layer is
// stored as it came; a layer the pool holds, which the entry's name did not say (a legacy
// docker save's), is recorded as the pool holds it.
func (a *Adding) Commit(ctx context.Context, b *archive.Bundle) error {
	layers := uncompressedLayers(b)
	a.mu.Lock()
	for _, blob := range b.Reachable() {
		p, ok := a.packed[blob.Path]
		if !ok || p.path == "" || blob.Path == "" {
			continue
		}
		p.raw = blob.Digest // the bundle's reader checked it
		if p.content == nil {
			p.chunks.DiffID = blob.Digest
		}
		switch held, ok := a.known[blob.Digest.Hex]; {
		case !layers[blob.Digest]:
			if err := a.unpack(blob.Path, p); err != nil {
				a.mu.Unlock()
				return err
			}
		case ok && a.holds(held):
			a.packed[blob.Path] = held
		}
	}
	a.mu.Unlock()
	return a.Stage.Commit(ctx, b)
}

// unpack puts back what pack compressed: the file staged for entry name.
func (a *Adding) unpack(name string, p *packed) error {
	f, err := os.Open(p.path)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := pgzip.NewReader(f)
	if err != nil {
		return err
	}
	if err := a.Stage.Entry(context.Background(), archive.Entry{Name: name}, zr); err != nil {
		return err
	}
	delete(a.packed, name)
	return os.Remove(p.path)
}

// storeAs says which blobs of the bundle go elsewhere: an uncompressed layer to its
// compressed blob, or to its recipe and pack.
func (a *Adding) storeAs(b *archive.Blob) ([]placing, bool) {
	p, ok := a.form(b)
	if !ok {
		return nil, false
	}
	return p.placings(), true
}

// form says how the pool stores a layer of the bundle, carried or left out.
func (a *Adding) form(b *archive.Blob) (*packed, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.packed[b.Path]; ok && b.Path != "" {
		return p, true
	}
	if b.Missing {
		p, ok := a.known[b.Digest.Hex]
		return p, ok
	}
	return nil, false
}

// uncompressedLayers returns the layers of the bundle's manifests whose media type says
// uncompressed tar.
func uncompressedLayers(b *archive.Bundle) map[v1.Hash]bool {
	out := map[v1.Hash]bool{}
	for _, blob := range b.Reachable() {
		var m struct{ Layers []v1.Descriptor }
		if blob.Data == nil || json.Unmarshal(blob.Data, &m) != nil {
			continue
		}
		for _, l := range m.Layers {
			if archive.GzipType(l.MediaType) != "" {
				out[l.Digest] = true
			}
		}
	}
	return out
}

// packedLayers maps the hex digest of every layer the records hold compressed to its blob.
func packedLayers(records []*Record) map[string]Stored {
	out := map[string]Stored{}
	for _, r := range records {
		for d, s := range r.Layers {
			out[d] = s
		}
	}
	return out
}

// heldLayers maps the hex digest of every layer the records hold in place of itself to how:
// compressed, or as content.
func heldLayers(records []*Record) map[string]*packed {
	out := map[string]*packed{}
	for d, s := range packedLayers(records) {
		out[d] = &packed{Stored: s}
	}
	for _, r := range records {
		for d, c := range r.Content {
			out[d] = &packed{content: &c}
		}
	}
	return out
}

// errUnlisted: a manifest names a layer the pool stores as content, which no OCI reader of
// the pool could read.
var errUnlisted = errors.New("it names a layer stored as content")

// expose makes the manifest (or index) d the one the pool lists in index.json: if it names
// layers the pool holds compressed, a copy naming the compressed blobs, stored and recorded
// in r.Manifests. packLayer, if not nil, is asked to compress the uncompressed layers r does
// not hold compressed yet. A manifest naming a layer stored as content fails with
// errUnlisted.
func (p *Pool) expose(r *Record, d v1.Descriptor, packLayer func(v1.Descriptor) (Stored, error)) (v1.Descriptor, error) {
	if !d.MediaType.IsIndex() && !d.MediaType.IsImage() {
		return d, nil
	}
	data, err := os.ReadFile(p.BlobPath(d.Digest))
	if err != nil {
		return d, err
	}
	data, changed, err := archive.Redescribe(data, func(c v1.Descriptor) (v1.Descriptor, error) {
		if d.MediaType.IsIndex() {
			return p.expose(r, c, packLayer)
		}
		if _, ok := r.Content[c.Digest.Hex]; ok {
			return c, errUnlisted
		}
		if gz := archive.GzipType(c.MediaType); gz != "" {
			s, ok := r.Layers[c.Digest.Hex]
			if !ok && packLayer != nil {
				var err error
				if s, err = packLayer(c); err != nil {
					return c, err
				}
				r.Layers[c.Digest.Hex], ok = s, true
			}
			if ok {
				c.MediaType, c.Digest, c.Size = gz, sha256Hex(s.Digest), s.Size
			}
		}
		// docker 26's containerd store writes docker layer types into OCI manifests; skopeo,
		// converting such a manifest for docker, refuses them ("Unknown media type during
		// manifest conversion"): the pool lists the OCI types, the blobs being the same.
		if oci := ociTypes[c.MediaType]; oci != "" && d.MediaType == types.OCIManifestSchema1 {
			c.MediaType = oci
		}
		return c, nil
	})
	if err != nil {
		return d, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if !changed {
		return d, nil
	}
	sum := sha256.Sum256(data)
	original := d.Digest.Hex
	d.Digest, d.Size = sha256Hex(hex.EncodeToString(sum[:])), int64(len(data))
	if !exists(p.BlobPath(d.Digest)) {
		if err := atomicfile.WriteFile(p.BlobPath(d.Digest), data, 0o644); err != nil {
			return d, err
		}
	}
	r.Manifests[original] = Stored{Digest: d.Digest.Hex, Size: d.Size}
	return d, nil
}

// Recompress stores every layer the pool holds uncompressed as a compressed blob, one
// bundle at a time: the compressed blobs and manifests first, then the bundle's record, then
// index.json, then gc frees the uncompressed blobs no record needs any more. Killed at any
// point, the pool holds every bundle in one form or the other, and the next run finishes.
// It returns the bytes of uncompressed layers it compressed and what they take now.
func (p *Pool) Recompress(ctx context.Context) (from, to int64, err error) {
	unlock, err := p.Lock()
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	records, err := p.Records()
	if err != nil {
		return 0, 0, err
	}
	known := packedLayers(records)
	blobs := filepath.Join(p.Dir, "blobs", "sha256")
	packLayer := func(d v1.Descriptor) (Stored, error) {
		if s, ok := known[d.Digest.Hex]; ok && exists(p.BlobPath(sha256Hex(s.Digest))) {
			return s, nil
		}
		f, err := os.Open(p.BlobPath(d.Digest))
		if err != nil {
			return Stored{}, err
		}
		defer f.Close()
		raw := sha256.New()
		pk, err := pack(filepath.Join(blobs, tempPrefix+randomHex()), io.TeeReader(f, raw))
		if got := archive.HashOf(raw); err == nil && got != d.Digest {
			os.Remove(pk.path)
			err = fmt.Errorf("%w: blob %s hashes to %s", ErrDamaged, d.Digest, got)
		}
		if err == nil {
			err = os.Rename(pk.path, p.BlobPath(sha256Hex(pk.Digest)))
		}
		if err != nil {
			return Stored{}, fmt.Errorf("compressing layer %s: %w", d.Digest, err)
		}
		known[d.Digest.Hex] = pk.Stored
		from, to = from+d.Size, to+pk.Size
		return pk.Stored, ctx.Err()
	}
	for _, r := range records {
		n := len(r.Layers) + len(r.Manifests)
		if err := p.exposeAll(r, packLayer); err != nil {
			return from, to, err
		}
		if len(r.Layers)+len(r.Manifests) == n {
			continue
		}
		if err := atomicfile.SyncDir(blobs); err != nil {
			return from, to, err
		}
		if err := p.writeRecord(r); err != nil {
			return from, to, err
		}
		if err := p.writeIndex(); err != nil {
			return from, to, err
		}
	}
	_, _, err = p.gc(false)
	return from, to, err
}

// exposeAll exposes every manifest of r's index, and lists in r.Unlisted those that name
// layers stored as content.
func (p *Pool) exposeAll(r *Record, packLayer func(v1.Descriptor) (Stored, error)) error {
	if r.Layers == nil {
		r.Layers, r.Manifests = map[string]Stored{}, map[string]Stored{}
	}
	r.Unlisted = nil
	for _, d := range r.Index {
		_, err := p.expose(r, d, packLayer)
		switch {
		case errors.Is(err, errUnlisted):
			r.Unlisted = append(r.Unlisted, d.Digest.Hex)
		case err != nil:
			return err
		}
	}
	return nil
}

// checkPacked reads a compressed layer once, checking both the stored blob's digest and that
// it decompresses to the layer it stands for.
func (p *Pool) checkPacked(layer string, s Stored) string {
	f, err := os.Open(p.BlobPath(sha256Hex(s.Digest)))
	if err != nil {
		return "missing"
	}
	defer f.Close()
	stored, raw := sha256.New(), sha256.New()
	in := io.TeeReader(bufio.NewReaderSize(f, 1<<16), stored)
	zr, err := pgzip.NewReader(in)
	if err == nil {
		_, err = io.Copy(raw, zr)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, in) // anything after the gzip stream counts for the digest
	}
	switch {
	case err != nil:
		return "reading: " + err.Error()
	case archive.HashOf(stored).Hex != s.Digest:
		return "content hashes to " + archive.HashOf(stored).String()
	case archive.HashOf(raw).Hex != layer:
		return fmt.Sprintf("decompresses to %s, not the layer sha256:%s it stands for", archive.HashOf(raw), layer)
	}
	return ""
}

// Inventory lists the layers of every image the pool holds (index.json's, and those it
// leaves out), and the digests of the layers the pool holds compressed or as content, as
// they came: a delta against the pool leaves those out.
func (p *Pool) Inventory() (*Inventory, error) {
	inv, err := p.Layout.Inventory()
	if err != nil {
		return nil, err
	}
	records, err := p.Records()
	if err != nil {
		return nil, err
	}
	for _, r := range records {
		var unlisted []v1.Descriptor
		for _, d := range r.Index {
			if slices.Contains(r.Unlisted, d.Digest.Hex) {
				unlisted = append(unlisted, d)
			}
		}
		if err := p.walk(inv, unlisted, 0); err != nil {
			return nil, err
		}
	}
	var layers []v1.Hash
	for d := range heldLayers(records) {
		layers = append(layers, sha256Hex(d))
	}
	inv.AddImage(nil, layers)
	return inv, nil
}

package archive

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/compress"
)

// A BlobSource opens the content of blobs a Bundle does not hold in memory.
type BlobSource interface {
	Open(ctx context.Context, b *Blob) (io.ReadCloser, error)
}

// A CheckedSource serves only the blobs' own bytes: each was hashed against its digest as it
// came (a spool of a bundle read whole), or its reader fails at its end unless it hashes to
// it (a content delta's rebuild). What reads one need not hash the blobs again.
type CheckedSource interface {
	BlobSource
	Checked() bool
}

// Checked reports whether src checks the blobs it serves, as a CheckedSource does.
func Checked(src BlobSource) bool {
	c, ok := src.(CheckedSource)
	return ok && c.Checked()
}

// An EncodedSource is a BlobSource that may also hold a blob's tar body already encoded for
// a codec and level (a spool compressing while it receives), level 0 meaning any: Write copies
// those bytes as they are. ok is false when it has no such encoding.
type EncodedSource interface {
	OpenEncoded(ctx context.Context, b *Blob, codec compress.Codec, level int) (rc io.ReadCloser, ok bool, err error)
}

// WriteOptions tune Write.
type WriteOptions struct {
	// Encoder compresses the bundle. Its Adapt, if set, compresses the blobs Write reads from
	// the source in parts as it chooses, Level only the rest; a source's blob already encoded
	// at any level is copied as it is.
	compress.Encoder
}

// epoch is every entry's mtime: the same images give the same bytes.
var epoch = time.Unix(0, 0)

// Write writes b as a bundle to w: oci-layout, index.json, manifest.json and repositories
// first, then the manifests and configs, then the layers, each set sorted by digest. Blobs
// that are Missing are left out (a thin bundle). Blobs from src are verified against their
// digests as they are copied.
func Write(ctx context.Context, w io.Writer, b *Bundle, src BlobSource, opts WriteOptions) error {
	bw, err := NewWriter(w, opts)
	if err != nil {
		return err
	}
	if err := bw.metadata(b); err != nil {
		return err
	}
	if err := bw.Blobs(ctx, src); err != nil {
		return err
	}
	return bw.End()
}

// A Writer writes one bundle, as Write does, in phases a caller can pace a reader by (docker's
// load: it sets up its unpacking as a stream begins, unpacks as layers come, and loads once
// the archive ends): Begin writes the first entry, the same whatever the bundle, before the
// bundle is known; Metadata the entries kept in memory (metadata, manifests, configs); Blobs
// those read from the source; End the end of the archive. Each phase's bytes have reached
// the destination when it returns.
type Writer struct {
	bw    *bundleWriter
	begun bool
	blobs []*Blob // those Blobs writes, in order
}

// NewWriter returns a Writer to w, encoding as opts say.
func NewWriter(w io.Writer, opts WriteOptions) (*Writer, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	return &Writer{bw: &bundleWriter{out: w, opts: opts}}, nil
}

// Begin writes the bundle's first entry.
func (w *Writer) Begin() error {
	w.begun = true
	if err := w.bw.file(layoutFile.name, layoutFile.data); err != nil {
		return err
	}
	return w.bw.endInline()
}

// Metadata writes b's metadata, and its blobs kept in memory up to the first that is not.
func (w *Writer) Metadata(b *Bundle) error {
	if err := w.metadata(b); err != nil {
		return err
	}
	return w.bw.endInline()
}

// metadata writes what Metadata does, the last entries' bytes perhaps still held by the
// compressor: Write's entries go on in the same gzip member.
func (w *Writer) metadata(b *Bundle) error {
	meta, err := metadata(b)
	if err != nil {
		return err
	}
	if w.begun {
		meta = meta[1:]
	}
	for _, m := range meta {
		if err := w.bw.file(m.name, m.data); err != nil {
			return err
		}
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := w.bw.inline(header(dir, 0, tar.TypeDir)); err != nil {
			return err
		}
	}
	w.blobs = writeOrder(b)
	for len(w.blobs) > 0 && w.blobs[0].Data != nil {
		if err := w.bw.blob(context.Background(), w.blobs[0], nil); err != nil {
			return fmt.Errorf("writing blob %s: %w", w.blobs[0].Digest, err)
		}
		w.blobs = w.blobs[1:]
	}
	return nil
}

// Blobs writes the rest of the bundle's blobs, reading those not kept in memory from src.
func (w *Writer) Blobs(ctx context.Context, src BlobSource) error {
	for _, blob := range w.blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.bw.blob(ctx, blob, src); err != nil {
			return fmt.Errorf("writing blob %s: %w", blob.Digest, err)
		}
	}
	w.blobs = nil
	return nil
}

// End ends the archive.
func (w *Writer) End() error {
	if err := w.bw.inline(make([]byte, 1024)); err != nil {
		return err
	}
	return w.bw.endInline()
}

type namedFile struct {
	name string
	data []byte
}

// metadata returns the top-level metadata files of b.
// Images and index entries are sorted (by tag, then digest): sources such as docker save list
// them in no fixed order, and the same images must give the same bytes.
func metadata(b *Bundle) ([]namedFile, error) {
	images := slices.Clone(b.Images)
	slices.SortStableFunc(images, func(x, y *Image) int {
		return cmp.Or(cmp.Compare(firstTag(x.RepoTags), firstTag(y.RepoTags)), cmp.Compare(x.ID().String(), y.ID().String()))
	})
	index := b.Index
	index.Manifests = append([]v1.Descriptor{}, index.Manifests...) // [] when empty, never null
	slices.SortStableFunc(index.Manifests, func(x, y v1.Descriptor) int {
		return cmp.Or(cmp.Compare(indexName(x), indexName(y)), cmp.Compare(x.Digest.String(), y.Digest.String()))
	})
	manifest, err := ManifestJSON(images, func(blob *Blob) string { return blobPath(blob.Digest) })
	if err != nil {
		return nil, err
	}
	repos := map[string]map[string]string{}
	for _, img := range images {
		for _, tag := range img.RepoTags {
			t, err := ParseTag(tag)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidMetadata, err)
			}
			repo := familiarRepo(t)
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			if n := len(img.Layers); n > 0 {
				repos[repo][t.TagStr()] = img.Layers[n-1].Digest.Hex
			}
		}
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return nil, err
	}
	repositories, err := json.Marshal(repos)
	if err != nil {
		return nil, err
	}
	return []namedFile{
		layoutFile,
		{"index.json", indexJSON},
		{"manifest.json", manifest},
		{"repositories", repositories},
	}, nil
}

// layoutFile is the first entry of every bundle Write writes.
var layoutFile = namedFile{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}

func firstTag(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return tags[0]
}

func indexName(d v1.Descriptor) string {
	return d.Annotations[annotationImageName] + "\x00" + d.Annotations[annotationRefName]
}

// ManifestJSON returns docker's manifest.json for images, with each blob at path(blob).
func ManifestJSON(images []*Image, path func(*Blob) string) ([]byte, error) {
	entries := []dockerManifest{}
	for _, img := range images {
		e := dockerManifest{Config: path(img.Config), RepoTags: img.RepoTags, Layers: []string{}}
		for _, l := range img.Layers {
			e.Layers = append(e.Layers, path(l.Blob))
		}
		entries = append(entries, e)
	}
	return json.Marshal(entries)
}

// writeOrder returns the blobs to write: those reachable from the index and the images and
// present, metadata (kept in memory) first, each group by digest.
func writeOrder(b *Bundle) []*Blob {
	var out []*Blob
	for _, blob := range b.Reachable() {
		if blob.Present() {
			out = append(out, blob)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Data != nil && out[j].Data == nil })
	return out
}

// bundleWriter writes tar entries to out; compressed, metadata and headers go into "inline"
// members (gzip members, zstd frames) and every blob body into a member of its own (see
// EncodeBody).
type bundleWriter struct {
	out  io.Writer
	opts WriteOptions
	zw   io.WriteCloser // the open inline member, if any
}

func (w *bundleWriter) inline(p []byte) error {
	if w.opts.Codec == compress.None {
		_, err := w.out.Write(p)
		return err
	}
	if w.zw == nil {
		zw, err := compress.NewMemberWriter(w.out, w.opts.Codec, w.opts.EffectiveLevel())
		if err != nil {
			return err
		}
		w.zw = zw
	}
	_, err := w.zw.Write(p)
	return err
}

func (w *bundleWriter) endInline() error {
	if w.zw == nil {
		return nil
	}
	err := w.zw.Close()
	w.zw = nil
	return err
}

func (w *bundleWriter) file(name string, data []byte) error {
	if err := w.inline(header(name, int64(len(data)), tar.TypeReg)); err != nil {
		return err
	}
	if err := w.inline(data); err != nil {
		return err
	}
	return w.inline(make([]byte, Padding(int64(len(data)))))
}

func (w *bundleWriter) blob(ctx context.Context, blob *Blob, src BlobSource) error {
	if err := w.inline(header(blobPath(blob.Digest), blob.Size, tar.TypeReg)); err != nil {
		return err
	}
	if err := w.endInline(); err != nil {
		return err
	}
	if blob.Data != nil {
		fixed := w.opts.Encoder // what is kept in memory goes at Level: adapting follows the source's blobs
		fixed.Adapt = nil
		return EncodeBody(w.out, bytes.NewReader(blob.Data), blob.Size, fixed)
	}
	if es, ok := src.(EncodedSource); ok {
		rc, ok, err := es.OpenEncoded(ctx, blob, w.opts.Codec, w.opts.CopiedLevel())
		if err != nil {
			return err
		}
		if ok {
			defer rc.Close()
			_, err := io.Copy(w.out, rc)
			return err
		}
	}
	rc, err := src.Open(ctx, blob)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	out := &countWriter{w: w.out}
	if err := EncodeBody(out, io.TeeReader(rc, h), blob.Size, w.opts.Encoder); err != nil {
		return err
	}
	if got := HashOf(h); got != blob.Digest {
		return fmt.Errorf("%w: content hashes to %s", ErrDigestMismatch, got)
	}
	if r, ok := src.(EncodedRecorder); ok && w.opts.Codec != compress.None {
		r.Encoded(blob, w.opts.Encoding(), out.n)
	}
	return nil
}

// An EncodedRecorder is a BlobSource that Write tells what it made of a blob it encoded from
// the source's content (a spool, which then knows the bytes a destination gets). It is
// exported for sources outside this package; Write is its only caller.
type EncodedRecorder interface {
	Encoded(b *Blob, as Encoding, size int64)
}

// An Encoding is how Write encodes the blobs it reads from a source: a codec at a level, or
// adapting. An EncodedRecorder compares them to tell what it was told apart.
type Encoding struct {
	codec compress.Codec
	level int // -1: adapting
}

// Encoding returns how Write encodes the blobs it reads from a source.
func (o WriteOptions) Encoding() Encoding {
	if o.Adapt != nil {
		return Encoding{o.Codec, -1}
	}
	return Encoding{o.Codec, o.EffectiveLevel()}
}

// CopiedLevel returns the level of an EncodedSource's blobs Write copies as they are: any (0)
// when adapting.
func (o WriteOptions) CopiedLevel() int {
	if o.Adapt != nil {
		return 0
	}
	return o.EffectiveLevel()
}

// EncodeBody writes the tar body of one entry — size bytes of src and the zero padding to the
// next 512-byte block — to dst, compressed by enc. Each blob being its own member (or members)
// is what lets a spool hold compressed bodies ahead of the headers naming them, and keeps the
// output the same whichever way a blob arrived: a source stages with it the bodies Write
// copies (an EncodedSource).
func EncodeBody(dst io.Writer, src io.Reader, size int64, enc compress.Encoder) error {
	w, err := enc.Writer(dst)
	if err != nil {
		return err
	}
	n, err := io.CopyN(w, src, size)
	if err == nil {
		_, err = w.Write(make([]byte, Padding(size)))
	}
	if cerr := w.Close(); err == nil { // on an error too: a compressor's goroutines write to dst until it is closed
		return cerr
	}
	if err == io.EOF {
		err = fmt.Errorf("got %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	return err
}

// Padding returns the zero bytes that end a tar entry's body of size bytes at a 512-byte block.
func Padding(size int64) int64 { return -size & 511 }

// header returns the tar header block for an entry, the same bytes every time.
func header(name string, size int64, typ byte) []byte {
	mode := int64(0o644)
	if typ == tar.TypeDir {
		mode = 0o755
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// Only the header is wanted: tw is dropped before its body and trailer.
	if err := tw.WriteHeader(&tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
		panic(fmt.Sprintf("tar header for %s: %v", name, err)) // names are ours and short
	}
	return buf.Bytes()
}

// Reachable returns the blobs the index and the images refer to, present or not, by digest.
func (b *Bundle) Reachable() []*Blob {
	seen := map[v1.Hash]*Blob{}
	add := func(h v1.Hash) *Blob {
		blob := b.blobs[h]
		if blob != nil {
			seen[h] = blob
		}
		return blob
	}
	var walk func(descs []v1.Descriptor)
	walk = func(descs []v1.Descriptor) {
		for _, d := range descs {
			if seen[d.Digest] != nil {
				continue // walked already: an index may list a child many times over
			}
			blob := add(d.Digest)
			if blob == nil || blob.Data == nil {
				continue
			}
			switch {
			case d.MediaType.IsIndex():
				var idx v1.IndexManifest
				if json.Unmarshal(blob.Data, &idx) == nil {
					walk(idx.Manifests)
				}
			case d.MediaType.IsImage():
				var m v1.Manifest
				if json.Unmarshal(blob.Data, &m) == nil {
					walk(append([]v1.Descriptor{m.Config}, m.Layers...))
				}
			}
		}
	}
	walk(b.Index.Manifests)
	for _, img := range b.Images {
		add(img.Config.Digest)
		if img.Manifest != nil {
			add(img.Manifest.Digest)
		}
		for _, l := range img.Layers {
			add(l.Digest)
		}
	}
	out := make([]*Blob, 0, len(seen))
	for _, blob := range seen {
		out = append(out, blob)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest.String() < out[j].Digest.String() })
	return out
}

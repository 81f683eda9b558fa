package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A Sink receives a bundle as Read streams it.
type Sink interface {
	// Entry receives one data entry — a blob, a legacy layer.tar or config — with its bytes,
	// exactly e.Size of them, not yet verified: a sink may stage them but must not make them
	// visible before Commit.
	Entry(ctx context.Context, e Entry, r io.Reader) error
	// Commit is called once, after the whole bundle was read and verified. Blobs the bundle
	// lacks are not present (Blob.Present); blobs ferry synthesized have Data but no Path.
	Commit(ctx context.Context, b *Bundle) error
	// Abort is called instead of Commit when reading or verifying fails: drop what was staged.
	Abort(err error)
}

// An Entry is a data entry of a bundle.
type Entry struct {
	Name string
	Size int64
}

// Limits on what Read holds in memory.
const (
	// metaMax caps every metadata file (manifest.json, index.json, manifests, configs).
	metaMax = 8 << 20
	// heldMax caps the JSON blobs held in memory at once.
	heldMax = 256 << 20
)

// ReadOptions tune Read.
type ReadOptions struct {
	// Platform picks the image from a multi-platform index in bundles without manifest.json;
	// nil means the host's.
	Platform *v1.Platform
}

// Read reads a bundle in one pass, streaming its data entries to sink, then verifies it
// (every blob against its digest, every layer against its diffID, every image against its
// ID) and calls sink.Commit. On any failure it calls sink.Abort and returns the error.
func Read(ctx context.Context, r io.Reader, sink Sink, opts ReadOptions) (*Bundle, error) {
	b, err := read(ctx, r, sink, opts)
	if err == nil {
		err = sink.Commit(ctx, b)
	}
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	return b, nil
}

func read(ctx context.Context, r io.Reader, sink Sink, opts ReadOptions) (*Bundle, error) {
	in, codec, err := decompress(&ctxReader{ctx: ctx, r: r}, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotBundle, err)
	}
	defer in.Close()
	rd := &reader{
		meta:    map[string][]byte{},
		entries: map[string]*Blob{},
		links:   map[string]string{},
		walked:  map[v1.Hash]bool{},
	}
	counted := &countingReader{r: in}
	tr := tar.NewReader(counted)
	for n := 0; ; n++ {
		start := counted.n
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, fmt.Errorf("%w: empty archive", ErrNotBundle)
			}
			// archive/tar also ends at a clean end of input between entries or in padding;
			// a bundle cut there must not read as a thin bundle. The marker is two zero
			// blocks after the last entry's padding.
			if counted.n-start < 1024 {
				return nil, fmt.Errorf("reading bundle: %w: it ends without the end-of-archive marker", ErrTruncated)
			}
			// The end of a compressed stream holds its checksum, past the tar's end.
			if codec != None {
				if _, err := io.Copy(io.Discard, in); err != nil {
					return nil, readErr(err, n, "")
				}
			}
			break
		}
		if err != nil {
			return nil, readErr(err, n, "")
		}
		if err := rd.entry(ctx, hdr, tr, sink); err != nil {
			return nil, readErr(err, n, hdr.Name)
		}
	}
	b, err := rd.resolve(opts)
	if err != nil {
		return nil, err
	}
	b.Codec = codec
	return b, nil
}

// readErr names what went wrong while reading the tar stream.
func readErr(err error, n int, name string) error {
	switch {
	case n == 0 && name == "" && (errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)):
		return fmt.Errorf("%w: not a tar archive", ErrNotBundle)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	if name != "" {
		return fmt.Errorf("entry %s: %w", name, err)
	}
	return fmt.Errorf("reading bundle: %w", err)
}

type reader struct {
	meta    map[string][]byte // top-level metadata files by name
	entries map[string]*Blob  // data entries by name
	links   map[string]string // link entries → the entries they name, never followed on disk
	walked  map[v1.Hash]bool  // indexes resolved
	held    int64             // bytes of JSON held in memory
}

// metaFiles are read into memory and not passed to sinks.
var metaFiles = map[string]bool{"manifest.json": true, "index.json": true, "oci-layout": true, "repositories": true}

// legacyMeta matches the per-layer metadata of docker's legacy format.
var legacyMeta = regexp.MustCompile(`^[0-9a-f]{64}/(json|VERSION)$`)

// digestName matches entry names that state the digest of their content: blobs/sha256/<hex>,
// and the <hex>.json, <hex>.tar, <hex>.tar.gz of docker, skopeo and go-containerregistry.
var digestName = regexp.MustCompile(`^(?:blobs/sha256/|(?:sha256:)?)([0-9a-f]{64})(?:\.json|\.tar|\.tar\.gz)?$`)

func (rd *reader) entry(ctx context.Context, hdr *tar.Header, tr io.Reader, sink Sink) error {
	name, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeXGlobalHeader:
		return nil
	case tar.TypeSymlink, tar.TypeLink:
		// docker save links the layer.tar of a layer two images share to its first copy,
		// skopeo and podman link legacy <id>/layer.tar to the real file: metadata may reach
		// a file of the archive through them (see file), nothing else.
		rd.links[name] = linkTarget(name, hdr)
		return nil
	case tar.TypeReg:
		if sparse(hdr) {
			// a few bytes of map stand for any number of zeros: refused like a device
			return fmt.Errorf("%w: sparse file", ErrUnsafeEntry)
		}
	default:
		return fmt.Errorf("%w: unexpected entry type %q", ErrUnsafeEntry, hdr.Typeflag)
	}
	if rd.meta[name] != nil || rd.entries[name] != nil {
		return fmt.Errorf("%w: duplicate entry", ErrInvalidMetadata)
	}
	if metaFiles[name] || legacyMeta.MatchString(name) {
		if hdr.Size > metaMax {
			return fmt.Errorf("%w: %d bytes, over the %d-byte cap for metadata", ErrTooLarge, hdr.Size, metaMax)
		}
		if rd.held += hdr.Size; rd.held > heldMax {
			return fmt.Errorf("%w: metadata adds up to over %d bytes", ErrTooLarge, heldMax)
		}
		data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
		if err == nil && int64(len(data)) < hdr.Size {
			err = io.ErrUnexpectedEOF
		}
		rd.meta[name] = data
		return err
	}
	blob, err := rd.data(ctx, Entry{Name: name, Size: hdr.Size}, tr, sink)
	if err != nil {
		return err
	}
	if m := digestName.FindStringSubmatch(name); m != nil && m[1] != blob.Digest.Hex {
		return fmt.Errorf("%w: content hashes to %s", ErrDigestMismatch, blob.Digest)
	}
	rd.entries[name] = blob
	return nil
}

// data streams one data entry to the sink while hashing it, and its decompressed content
// when it is compressed; small JSON entries (manifests, configs) are also held in memory.
func (rd *reader) data(ctx context.Context, e Entry, tr io.Reader, sink Sink) (*Blob, error) {
	blob := &Blob{Size: e.Size, Path: e.Name}
	head := make([]byte, min(e.Size, 6))
	if _, err := io.ReadFull(tr, head); err != nil {
		return nil, noEOF(err)
	}
	src := io.MultiReader(bytes.NewReader(head), io.LimitReader(tr, e.Size-int64(len(head))))
	if e.Size <= metaMax && len(head) > 0 && head[0] == '{' && rd.held+e.Size <= heldMax {
		data, err := io.ReadAll(src)
		if err != nil {
			return nil, noEOF(err)
		}
		if int64(len(data)) < e.Size {
			return nil, io.ErrUnexpectedEOF
		}
		blob.Data, blob.Digest = data, sha256Hash(data)
		blob.diffID = blob.Digest
		rd.held += e.Size
		return blob, sink.Entry(ctx, e, bytes.NewReader(data))
	}

	digest := sha256.New()
	var hashes io.Writer = digest
	var diff *diffHasher
	if blob.codec = sniff(head); blob.codec != None {
		diff = newDiffHasher()
		hashes = io.MultiWriter(digest, diff)
	}
	counted := &countingReader{r: io.TeeReader(src, hashes)}
	err := sink.Entry(ctx, e, counted)
	if err == nil {
		_, err = io.Copy(io.Discard, counted) // hash what the sink left unread
	}
	if err == nil && counted.n < e.Size {
		err = io.ErrUnexpectedEOF
	}
	blob.Digest = hashOf(digest)
	blob.diffID = blob.Digest
	if diff != nil {
		blob.diffID, blob.diffErr = diff.finish(err)
	}
	if err != nil {
		return nil, noEOF(err)
	}
	return blob, nil
}

// diffHasher computes the digest of the decompressed bytes written to it.
type diffHasher struct {
	*io.PipeWriter
	done chan struct{}
	sum  v1.Hash
	err  error
}

func newDiffHasher() *diffHasher {
	pr, pw := io.Pipe()
	d := &diffHasher{PipeWriter: pw, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		zr, _, err := decompress(pr, false)
		if err == nil {
			h := sha256.New()
			_, err = io.Copy(h, zr)
			zr.Close()
			d.sum = hashOf(h)
		}
		d.err = err
		pr.CloseWithError(err) // a failed decompression must not stall the writer
	}()
	return d
}

func (d *diffHasher) finish(readErr error) (v1.Hash, error) {
	d.CloseWithError(readErr)
	<-d.done
	if d.err != nil {
		return v1.Hash{}, fmt.Errorf("decompressing: %w", d.err)
	}
	return d.sum, nil
}

func (d *diffHasher) Write(p []byte) (int, error) {
	// Errors stay with the hasher: a blob that merely looks compressed is not an error
	// unless it is used as a layer.
	d.PipeWriter.Write(p) //nolint:errcheck
	return len(p), nil
}

func hashOf(h interface{ Sum([]byte) []byte }) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// cleanPath normalises an archive path and refuses those that could escape a directory.
func cleanPath(p string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(p, "./"))
	if p == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(p, "\\") {
		return "", fmt.Errorf("%w: path %q leaves the archive", ErrUnsafeEntry, p)
	}
	return clean, nil
}

// linkTarget returns the entry a link names, cleaned but not checked: a symlink's target is
// relative to its directory, a hard link's to the archive. Never "".
func linkTarget(name string, hdr *tar.Header) string {
	if hdr.Typeflag == tar.TypeSymlink && !path.IsAbs(hdr.Linkname) {
		return path.Join(path.Dir(name), hdr.Linkname)
	}
	return path.Clean(hdr.Linkname)
}

// sparse reports whether archive/tar expands the entry from a PAX sparse map.
func sparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Discard is a Sink that keeps nothing: Read with it lists and verifies a bundle.
var Discard Sink = discard{}

type discard struct{}

func (discard) Entry(context.Context, Entry, io.Reader) error { return nil }
func (discard) Commit(context.Context, *Bundle) error         { return nil }
func (discard) Abort(error)                                   {}

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/compress"
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

// A HashSink is a Sink also told the digest of each data entry once Read has passed it
// whole, and the digest of its content decompressed (the digest again for an entry that is
// not compressed): what a sink may use before Commit when a digest is all it needs to trust
// an entry (a layer whose diffID is the one an image asks for).
type HashSink interface {
	Sink
	Hashed(e Entry, digest, diffID v1.Hash)
}

// An Entry is a data entry of a bundle.
type Entry struct {
	Name string
	Size int64
	// Listed: the metadata read before this entry (manifest.json) lists it, so the bundle
	// uses it if it is read at all. When false nothing read so far says so: a sink that hands
	// entries on as they come (a docker load stream) holds it back until Commit, whose bundle
	// names the entries it uses (Blob.Path); the others are in Bundle.Unreferenced.
	Listed bool
	// Under is, for a layer of docker's legacy format (ID/layer.tar) whose ID/json came
	// first (docker save writes each directory's json before its layer), the ID of the layer
	// under it as the json says, "" for a layer under none; nil when no json came first. It
	// lets a sink tell which layer an entry is before its bytes: trust it no further.
	Under *string
}

// Limits on what Read holds in memory.
const (
	// metaMax caps every metadata file (manifest.json, index.json, manifests, configs).
	metaMax = 8 << 20
	// keptMax caps the JSON kept in memory at once: with what parsing it costs, it keeps
	// reading a bundle of large configs near 64 MiB of memory (70 MiB measured). Each JSON
	// entry kept counts keptCost bytes more, for what keeping it costs.
	keptMax  = 16 << 20
	keptCost = 64
	// linksMax caps the bytes of link targets kept (a link's target is kept until the
	// metadata says whether anything goes through it).
	linksMax = 4 << 20
	// sampleMax caps the bytes of entry names kept for reporting those nothing refers to.
	sampleMax = 1 << 20
)

// ReadOptions tune Read.
type ReadOptions struct {
	// Platform picks the image from a multi-platform index in bundles without manifest.json;
	// nil means the host's.
	Platform *v1.Platform
	// Trusted says the stream is a docker daemon's own save, not a file from elsewhere:
	// every data entry is passed on as Listed, none held back.
	Trusted bool
	// Check, if set, is given the bundle once read and verified, before sink.Commit: an
	// error aborts the read (a destination that cannot take what the bundle holds).
	Check func(*Bundle) error
}

// Read reads a bundle in one pass, streaming its data entries to sink, then verifies it
// (every blob against its digest, every layer against its diffID, every image against its
// ID) and calls sink.Commit. On any failure it calls sink.Abort and returns the error.
func Read(ctx context.Context, r io.Reader, sink Sink, opts ReadOptions) (*Bundle, error) {
	b, err := read(ctx, r, sink, opts)
	if err == nil && opts.Check != nil {
		err = opts.Check(b)
	}
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
	in, codec, err := decompress(&ctxReader{ctx: ctx, r: r})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotBundle, err)
	}
	defer in.Close()
	rd := &reader{
		trusted:   opts.Trusted,
		meta:      map[string][]byte{},
		names:     map[NameKey]ref{},
		json:      map[ref][]byte{},
		diffErrs:  map[ref]error{},
		links:     map[NameKey]string{},
		listed:    map[NameKey]bool{},
		walked:    map[v1.Hash]bool{},
		followed:  map[NameKey]bool{},
		reaches:   map[v1.Hash][]*Image{},
		artifacts: map[v1.Hash]bool{},
		under:     map[string]string{},
	}
	defer rd.recs.close()
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
			// Read to the end: what follows must be the zeros tar pads records with, and
			// a compressed stream's end holds its checksum.
			if err := zerosToEnd(counted); err != nil {
				return nil, readErr(err, n, "")
			}
			break
		}
		if err != nil {
			// the previous entry was read whole: its padding is all that lies before the header
			return nil, readErr(fmt.Errorf("tar header at offset %d: %w", (start+511)&^511, err), n, "")
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
	case n == 0 && name == "" && (tarErr(err) || errors.Is(err, io.ErrUnexpectedEOF)):
		return fmt.Errorf("%w: not a tar archive", ErrNotBundle)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: %w", ErrTruncated, err)
	case tarErr(err) && !errors.Is(err, ErrCorrupt):
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if name != "" {
		return fmt.Errorf("entry %s: %w", Quote(name), err)
	}
	return fmt.Errorf("reading bundle: %w", err)
}

// tarErr reports whether archive/tar refused what it read (a header, a PAX record).
func tarErr(err error) bool {
	return errors.Is(err, tar.ErrHeader) || strings.Contains(err.Error(), "archive/tar:")
}

// zerosToEnd reads r to its end and refuses anything but zeros: a second tar, another
// compressed member, stray bytes after the end of the archive.
func zerosToEnd(r *countingReader) error {
	start := r.n
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if i := bytes.IndexFunc(buf[:n], func(c rune) bool { return c != 0 }); i >= 0 {
			return fmt.Errorf("%w: data %d bytes after the end of the archive (offset %d)", ErrCorrupt, r.n-int64(n)+int64(i)-start, r.n-int64(n)+int64(i))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// reader is what Read knows of a bundle as it reads it (see records.go).
type reader struct {
	meta      map[string][]byte    // top-level metadata files (metaFiles) by name
	names     map[NameKey]ref      // every entry read
	recs      records              // of data entries
	json      map[ref][]byte       // data entries kept in memory: JSON (manifests, configs)
	diffErrs  map[ref]error        // why a compressed data entry does not decompress
	links     map[NameKey]string   // link entries → the entries they name, never followed on disk
	linkBytes int                  // of link targets kept
	sample    []string             // names of the first entries, for reporting those of no use
	sampled   int                  // bytes of names in sample
	listed    map[NameKey]bool     // entries manifest.json names, when it came first
	trusted   bool                 // ReadOptions.Trusted
	walked    map[v1.Hash]bool     // indexes resolved
	kept      int64                // bytes of JSON kept in memory
	followed  map[NameKey]bool     // links metadata went through
	reaches   map[v1.Hash][]*Image // the images each index reaches
	artifacts map[v1.Hash]bool     // the manifests that are artifacts, not images
	indexed   map[v1.Hash]*Image   // the images index.json reaches, by manifest digest
	under     map[string]string    // the parent each legacy json read names, by its directory
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
	if name == ContentDelta {
		return fmt.Errorf("%w: a content delta, rebuilt into images by ferry load -i FILE --to STORE from what the store holds", ErrNotBundle)
	}
	key := KeyOf(name)
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeXGlobalHeader:
		return nil
	case tar.TypeSymlink, tar.TypeLink:
		// docker save links the layer.tar of a layer two images share to its first copy,
		// skopeo and podman link legacy <id>/layer.tar to the real file: metadata may reach
		// a file of the archive through them (see file), nothing else.
		if err := rd.add(key, name, linkRef); err != nil {
			return err
		}
		target := linkTarget(name, hdr)
		if rd.linkBytes += len(target); rd.linkBytes > linksMax {
			return fmt.Errorf("%w: the targets of the links before it add up to over %d bytes", ErrTooLarge, linksMax)
		}
		rd.links[key] = target
		if rd.listed[key] {
			rd.listed[KeyOf(target)] = true
		}
		return nil
	case tar.TypeReg:
		if sparse(hdr) {
			// a few bytes of map stand for any number of zeros: refused like a device
			return fmt.Errorf("%w: sparse file", ErrUnsafeEntry)
		}
	default:
		return fmt.Errorf("%w: unexpected entry type %q", ErrUnsafeEntry, hdr.Typeflag)
	}
	if metaFiles[name] || legacyMeta.MatchString(name) {
		if err := rd.add(key, name, metaRef); err != nil {
			return err
		}
		if hdr.Size > metaMax {
			return fmt.Errorf("%w: %d bytes, over the %d-byte cap for metadata", ErrTooLarge, hdr.Size, metaMax)
		}
		if legacyMeta.MatchString(name) {
			// docker's per-layer json and VERSION: only the json's parent is of use (Entry.Under)
			data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
			if err == nil && int64(len(data)) < hdr.Size {
				err = io.ErrUnexpectedEOF
			}
			var v struct{ Parent string }
			if dir, base := path.Split(name); base == "json" && json.Unmarshal(data, &v) == nil {
				rd.under[dir] = v.Parent
			}
			return noEOF(err)
		}
		if rd.kept += hdr.Size; rd.kept > keptMax {
			return fmt.Errorf("%w: the JSON entries before it add up to over %d bytes", ErrTooLarge, keptMax)
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return noEOF(err)
		}
		rd.meta[name] = data
		if name == "manifest.json" {
			rd.list(data)
		}
		return nil
	}
	e := Entry{Name: name, Size: hdr.Size, Listed: rd.trusted || rd.listed[key]}
	if dir, base := path.Split(name); base == "layer.tar" {
		if parent, ok := rd.under[dir]; ok {
			e.Under = &parent
		}
	}
	if !e.Listed && rd.meta["manifest.json"] != nil && rd.meta["index.json"] != nil && !strings.HasPrefix(name, "blobs/sha256/") {
		// With both read, only manifest.json's entries and blobs are of any use: the rest
		// is skipped unread by any sink.
		if err := rd.add(key, name, skippedRef); err != nil {
			return err
		}
		_, err := io.CopyN(io.Discard, tr, hdr.Size)
		return noEOF(err)
	}
	i := rd.recs.n // the ref of the record it gets
	if err := rd.add(key, name, i); err != nil {
		return err
	}
	rec, err := rd.data(ctx, e, tr, sink)
	if err != nil {
		return err
	}
	if m := digestName.FindStringSubmatch(name); m != nil && m[1] != hex.EncodeToString(rec.digest[:]) {
		return fmt.Errorf("%w: content hashes to sha256:%x", ErrDigestMismatch, rec.digest)
	}
	if h, ok := sink.(HashSink); ok && rec.diffErr == nil {
		diffID := rec.digest
		if rec.codec != compress.None {
			diffID = rec.diffID
		}
		h.Hashed(e, sha256Of(rec.digest), sha256Of(diffID))
	}
	if rec.json != nil {
		rd.json[i] = rec.json
	}
	if rec.diffErr != nil {
		rd.diffErrs[i] = rec.diffErr
	}
	return rd.recs.add(rec.record)
}

// add records an entry, refusing a name the archive had before; it keeps the names of the
// first entries for reporting.
func (rd *reader) add(key NameKey, name string, r ref) error {
	if _, ok := rd.names[key]; ok {
		return fmt.Errorf("%w: duplicate entry", ErrInvalidMetadata)
	}
	if len(rd.names) >= maxEntries {
		return fmt.Errorf("%w: the bundle has over %d entries", ErrTooLarge, maxEntries)
	}
	rd.names[key] = r
	if r != metaRef && rd.sampled+len(name)+16 <= sampleMax {
		rd.sample = append(rd.sample, name)
		rd.sampled += len(name) + 16 // with the string's header
	}
	return nil
}

// list records the entries manifest.json names, directly or through links read before it.
func (rd *reader) list(manifestJSON []byte) {
	var entries []dockerManifest
	json.Unmarshal(manifestJSON, &entries) //nolint:errcheck // resolve says what is wrong
	for _, e := range entries {
		for _, p := range append([]string{e.Config}, e.Layers...) {
			if clean, err := cleanPath(p); err == nil {
				key := KeyOf(clean)
				rd.listed[key] = true
				if target, ok := rd.links[key]; ok {
					rd.listed[KeyOf(target)] = true
				}
			}
		}
	}
}

// dataRead is what reading a data entry gives.
type dataRead struct {
	record
	json    []byte // the content, when kept in memory
	diffErr error  // why it does not decompress, when it looks compressed
}

// data streams one data entry to the sink while hashing it, and its decompressed content
// when it is compressed; small JSON entries (manifests, configs) are also kept in memory.
func (rd *reader) data(ctx context.Context, e Entry, tr io.Reader, sink Sink) (dataRead, error) {
	d := dataRead{record: record{size: e.Size}}
	head := make([]byte, min(e.Size, compress.SniffLen))
	if _, err := io.ReadFull(tr, head); err != nil {
		return d, noEOF(err)
	}
	src := io.MultiReader(bytes.NewReader(head), io.LimitReader(tr, e.Size-int64(len(head))))
	isJSON := e.Size <= metaMax && len(head) > 0 && head[0] == '{'
	if isJSON && rd.kept+e.Size+keptCost > keptMax {
		d.unkept = true
	} else if isJSON {
		d.json = make([]byte, e.Size)
		if _, err := io.ReadFull(src, d.json); err != nil {
			return d, noEOF(err)
		}
		d.digest = sha256.Sum256(d.json)
		rd.kept += e.Size + keptCost
		return d, sink.Entry(ctx, e, bytes.NewReader(d.json))
	}

	digest := sha256.New()
	var hashes io.Writer = digest
	var diff *diffHasher
	if d.codec = compress.Sniff(head); d.codec != compress.None {
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
	digest.Sum(d.digest[:0])
	if diff != nil {
		d.diffID, d.diffErr = diff.finish(err)
	}
	return d, noEOF(err)
}

// diffHasher computes the digest of the decompressed bytes written to it.
type diffHasher struct {
	*io.PipeWriter
	done chan struct{}
	sum  [32]byte
	err  error
}

func newDiffHasher() *diffHasher {
	pr, pw := io.Pipe()
	d := &diffHasher{PipeWriter: pw, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		zr, _, err := decompress(pr) // a layer may be a bomb as well as the bundle
		if err == nil {
			h := sha256.New()
			_, err = io.Copy(h, zr)
			zr.Close()
			h.Sum(d.sum[:0])
		}
		d.err = err
		pr.CloseWithError(err) // a failed decompression must not stall the writer
	}()
	return d
}

func (d *diffHasher) finish(readErr error) ([32]byte, error) {
	d.CloseWithError(readErr)
	<-d.done
	return d.sum, d.err
}

func (d *diffHasher) Write(p []byte) (int, error) {
	// Errors stay with the hasher: a blob that merely looks compressed is not an error
	// unless it is used as a layer.
	d.PipeWriter.Write(p) //nolint:errcheck
	return len(p), nil
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
		return "", fmt.Errorf("%w: path %s leaves the archive", ErrUnsafeEntry, Quote(p))
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

// ContextReader reads r until ctx is done, then fails with why it is.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return &ctxReader{ctx: ctx, r: r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// Discard is a Sink that keeps nothing: Read with it lists and verifies a bundle.
var Discard Sink = discard{}

type discard struct{}

func (discard) Entry(context.Context, Entry, io.Reader) error { return nil }
func (discard) Commit(context.Context, *Bundle) error         { return nil }
func (discard) Abort(error)                                   {}

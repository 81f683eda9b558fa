package archive

import "errors"

// Sentinel errors; the messages wrapping them name the entry at fault.
var (
	// ErrNotBundle: the input is not a tar archive, is empty, or holds no image.
	ErrNotBundle = errors.New("not an image bundle")
	// ErrTruncated: the input ended before the archive did.
	ErrTruncated = errors.New("bundle is truncated")
	// ErrUnsafeEntry: an absolute path, a ".." component or a device in the archive or in its
	// metadata, or a link metadata names that does not lead to a file of the archive.
	ErrUnsafeEntry = errors.New("unsafe entry")
	// ErrTooLarge: a metadata file is over the cap, or decompression expands past sane bounds.
	ErrTooLarge = errors.New("too large")
	// ErrDigestMismatch: a blob's content does not hash to its name or descriptor.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrDiffIDMismatch: an uncompressed layer does not hash to the diffID in its config.
	ErrDiffIDMismatch = errors.New("diffID mismatch")
	// ErrInvalidMetadata: manifest.json, index.json, a manifest or a config is malformed,
	// refers to nothing, or names an invalid tag.
	ErrInvalidMetadata = errors.New("invalid metadata")
	// ErrMissingBlob: a manifest or config refers to a blob the bundle does not hold.
	ErrMissingBlob = errors.New("missing blob")
)

// ContentDelta names the first entry of a content delta (package content): a tar that is not
// a bundle, which ferry load rebuilds into one.
const ContentDelta = "ferry-content-delta.json"

// ErrCorrupt: the archive itself is damaged: a bad tar header, a compressed stream that does
// not decompress, or data after the end of the archive.
var ErrCorrupt = errors.New("corrupt archive")

// Package compress owns how ferry compresses and decompresses streams: the codecs it knows
// (Codec: gzip and zstd written, bzip2 read as well), telling them apart by their first bytes
// (Sniff, NewReader), the members it writes (NewMemberWriter, NewGzipWriter: in parallel, the
// same input giving the same bytes), and the choice of a stream's compression: an Encoder for
// one stream, an Adaptive that follows the link a stream goes over, and the Compression a
// user chose, which gives each destination its Encoder.
//
// The package knows nothing of bundles or tar (see package archive, which frames each blob
// body as members of its own and decides what a damaged or expanding stream means for a
// bundle), nor of stores and hosts.
package compress

// Package archive owns ferry's bundle format: one tar that `docker load` takes unchanged and
// that is also an OCI image layout (oci-layout, index.json, blobs/sha256, manifest.json,
// repositories), with its metadata first so a streaming reader can plan.
//
// Read parses any bundle dialect in one pass — docker legacy (docker save up to 24), docker 25+,
// OCI archives, skopeo, podman and go-containerregistry tarballs, plain or with gzip or zstd
// outer compression — hashing every entry as it streams past, and hands data entries to a Sink
// before it verifies the whole (digests, diffIDs, image IDs) and calls Commit. Write writes a
// bundle from a Bundle description and a BlobSource, reproducibly, each blob body compressed
// as members of its own (EncodeBody), so that a source holding bodies already encoded (an
// EncodedSource, such as archive/spool's Spool) has them copied as they are.
//
// Beside its images, a bundle's OCI part may hold artifacts (Artifact: signatures,
// attestations, SBOMs that refer to a manifest of the bundle, or artifacts of their own such as
// Helm charts) and multi-platform indexes whole; manifest.json lists images only, so docker
// load never sees the rest (OCIOnly says what it leaves out).
//
// The codecs and the choice of a stream's compression are package compress's; archive decides
// what a damaged or wildly expanding stream means for a bundle (ErrCorrupt, ErrTooLarge). The
// package knows nothing about stores or hosts (see package store) and never extracts layer
// contents.
package archive

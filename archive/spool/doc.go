// Package spool owns the Spool: a temporary directory that stages a bundle's data entries as
// archive.Read streams them, already encoded the way archive.Write will write them, and
// serves them to Write (or any reader of an archive.BlobSource) while they are still being
// staged. It is how a stream whose metadata comes last (docker save) becomes a bundle whose
// metadata comes first without compressing anything twice.
//
// The package does not parse or write bundles (package archive does, and defines the
// interfaces a Spool implements), does not compress (package compress does), and knows
// nothing of stores or hosts.
package spool

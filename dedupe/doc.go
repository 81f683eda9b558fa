// Package dedupe owns what is stored once and what the other side already has: inventories
// of what a store holds, the thinning of bundles against them (deltas), and the pool, a
// content-addressed OCI layout that stores each blob once for any number of bundles.
//
// It reads and writes bundles through package archive; it knows no daemons or hosts — the
// inventory of a docker daemon is taken by package transfer, which owns the Docker API.
package dedupe

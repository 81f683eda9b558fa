// Package dedupe owns what is stored once and what the other side already has: inventories
// of what a store holds, the thinning of bundles against them (deltas), the OCI image layout
// ferry writes (Layout, over this machine's file system or a host's over SFTP, with lock
// files both honour), and the pool, a content-addressed layout that stores each blob once for
// any number of bundles.
//
// It reads and writes bundles through package archive; it knows no daemons or hosts — the
// stores under store/ take inventories of daemons and registries.
package dedupe

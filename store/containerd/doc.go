// Package containerd is a containerd as a store and a source: containerd[:NAMESPACE], the
// images of one namespace (k8s.io, as Kubernetes uses, unless $CONTAINERD_NAMESPACE or the
// reference names another), on this machine ($CONTAINERD_ADDRESS or the default socket) or
// on a host, its socket reached through the SSH connection. It speaks containerd's own Go
// client (github.com/containerd/containerd/v2/client) over a dialer it gives it.
//
// What it holds: the blobs of the content store (with their uncompressed digests where
// labelled: LayerBlobs finds a layer's blob by its diffID, so a sender that compresses
// layers names the blob the node holds) and the layers the snapshotter holds unpacked, by
// chain ID. It is a store.Unpacker: it takes uncompressed layers gzip-compressed, and
// unpacks them all the same (package transfer compresses them). What it takes: only
// the blobs it lacks, each written through the content store's ingest under a ref named
// after its digest, so a transfer cut mid-blob resumes from the offset already written;
// containerd checks each blob's size and digest as it commits it. Then every image is
// unpacked into the snapshotter ($CONTAINERD_SNAPSHOTTER, overlayfs by default) and only
// then named, with the labels containerd's garbage collector follows from an image to its
// content and snapshots. A lease holds everything written until the images name it.
//
// It does not read or write the bundle format (package archive does), decide what to send
// (package transfer does), or open SSH connections (package sshconn does).
package containerd

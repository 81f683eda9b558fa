package store

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// Optional abilities of a store, found by type assertion. What ferry does with a store is
// chosen from these, never from which kind it is.

// A Resumer is a Receiver that resumes blobs a cut transfer left partly written: it reads
// and drops the part of an entry the store already holds. Resumed says how many bytes of
// the entries it was given it did not have to move.
type Resumer interface {
	Resumed() int64
}

// A Reader is a store images can be read from.
type Reader interface {
	// Open reads the images refs name (in the store's own words: tags, NAME/TAG in a pool,
	// or "" for the only image) once, ready to be written any number of times.
	Open(ctx context.Context, refs []string, opts ReadOptions) (*Images, error)
}

// A Copier is a Reader that can also stream the images straight into a sink, staging
// nothing (docker's save).
type Copier interface {
	Reader
	Copy(ctx context.Context, refs []string, opts ReadOptions, sink archive.Sink) (*archive.Bundle, error)
}

// A Streamer takes docker-archive byte streams, plain or compressed, as docker load does: a
// sender can compress once and fan one stream out to many stores.
type Streamer interface {
	LoadStream(ctx context.Context, r io.Reader) (loaded []string, err error)
}

// A Fronted store keeps its images in another store that ferry can also write, and that
// takes more: docker on the containerd image store keeps them in its containerd, which
// completes thin bundles and resumes blobs a cut transfer left, where docker's load takes
// complete images only. Behind returns that store, whose receiver names images where the
// front store finds them and checks that it does; nil and no error when the store keeps
// its images itself. An error says why the store behind cannot be used: the front one
// still can.
type Fronted interface {
	Behind(ctx context.Context) (Store, error)
}

// An Unpacker keeps layers as blobs and unpacks them (containerd): it is better sent an
// uncompressed layer compressed, which it unpacks all the same. LayerBlobs says which of the
// layers diffIDs name it holds as a blob, gzip-compressed or not: the layer's diffID, the
// blob's digest and size, and whether it is gzip-compressed (else it is the uncompressed
// tar itself). A sender names such blobs in the manifests it rewrites, and sends nothing for
// those layers.
type Unpacker interface {
	LayerBlobs(ctx context.Context, diffIDs []v1.Hash) (map[v1.Hash]LayerBlob, error)
}

// A LayerBlob is a blob a store holds a layer in.
type LayerBlob struct {
	Digest v1.Hash
	Size   int64
	Gzip   bool
}

// A Saver is a daemon whose images are read as one docker-archive stream (docker save), and
// that says which layers the stream will carry before it starts: a sender can send the
// stream on as it is read.
type Saver interface {
	Reader
	// SaveLayers returns the diffIDs of each image's layers and the images' size, an
	// estimate of the stream's; it checks the references.
	SaveLayers(ctx context.Context, refs []string) (layers [][]v1.Hash, total int64, err error)
	// Save starts the stream.
	Save(ctx context.Context, refs []string) (io.ReadCloser, error)
}

// A Tagger lists the tags of every image it holds, sorted (send --all).
type Tagger interface {
	Tagged(ctx context.Context) ([]string, error)
}

// A Stepper is a Streamer that keeps the layers of every image it loads and skips the
// layers whose chain it holds (docker on its classic store): a sender can send it the
// layers it lacks in steps, untagged images labelled StepLabel of the first layers of the
// images sent, so that a cut send keeps the steps loaded. RemoveSteps removes the steps of
// images (each given by its diffIDs) once they are loaded.
type Stepper interface {
	Streamer
	RemoveSteps(ctx context.Context, images [][]v1.Hash) error
}

// StepLabel labels the step images of a send (see Stepper). `docker image prune` removes
// one a cut send left and no later send completed.
const StepLabel = "org.ferrytool.step"

// A ZstdTaker says whether its load takes zstd-compressed input (docker 23 and later).
type ZstdTaker interface {
	TakesZstd(ctx context.Context) bool
}

// An OCIKeeper keeps the OCI part of a bundle whole: its artifacts (signatures, attestations,
// SBOMs, Helm charts and other OCI artifacts), each as it was found, and its multi-platform
// indexes with every platform, digests unchanged. Other stores take the images of
// manifest.json alone (archive.OCIOnly says what they leave out).
type OCIKeeper interface {
	KeepsOCI()
}

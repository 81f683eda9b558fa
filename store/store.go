// Package store is ferry's model of the places images live: the docker daemon (classic or
// containerd image store), podman, an OCI image layout directory, a registry, a pool. Each
// kind is one package under store/ that registers itself (Register); every verb reaches every
// kind through the same reference grammar (Parse, Open), on this machine or on a host over
// SSH (Env.Host).
//
// A Store says what it holds (Inventory) and takes verified bundles (Receive): thin where it
// can complete them, and nothing visible before every digest checked out. Optional abilities
// are found by type assertion: a Reader gives images out, a Streamer takes docker-archive
// byte streams (so one compressed stream can fan out to many hosts), a Fronted store has
// another behind it that takes images better.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/sshconn"
)

// A Store holds images.
type Store interface {
	// String names the store in the reference grammar ("docker", "oci:/srv/images").
	String() string
	// Inventory says what the store holds. Its Complete flag says the store takes complete
	// images only; then Thin leaves out only images it holds whole.
	Inventory(ctx context.Context) (*dedupe.Inventory, error)
	// Receive returns a sink for one bundle. The store changes only in Commit, after the
	// bundle was read and verified; Abort leaves it as it was.
	Receive(ctx context.Context) (Receiver, error)
	// Close releases the store's connections.
	Close() error
}

// A Receiver takes one bundle into a store and then says what the store now names.
type Receiver interface {
	archive.Sink
	Loaded() []Loaded
}

// A Resumer is a Receiver that resumes blobs a cut transfer left partly written: it reads
// and drops the part of an entry the store already holds. Resumed says how many bytes of
// the entries it was given it did not have to move.
type Resumer interface {
	Resumed() int64
}

// A Loaded image is an image now in a store.
type Loaded struct {
	Ref string // the tag, or the image ID when untagged
	ID  v1.Hash
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

// ReadOptions say how a Reader reads.
type ReadOptions struct {
	// Platform picks from multi-platform indexes; nil means the host's.
	Platform *v1.Platform
	// AllPlatforms keeps an index whole in the OCI part of the bundle.
	AllPlatforms bool
	// Write is how the images will be written: a reader that stages (docker) encodes for it.
	Write archive.WriteOptions
	// TempDir holds what a reader stages ("" for the system's temp dir).
	TempDir string
	// Progress, if set, is told how many source bytes were read so far, and an estimate of
	// the total (0 when unknown).
	Progress func(done, total int64)
}

// PlatformOrHost is the platform to pick: o.Platform, else the host's.
func (o ReadOptions) PlatformOrHost() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return archive.HostPlatform()
}

// Env is where a store is opened.
type Env struct {
	// Host, if set, is the SSH connection to the host the store is on; nil means this machine.
	Host *sshconn.Client
	// Socket is a socket path the host reference named (ssh://host/PATH), for daemons.
	Socket string
	// Insecure allows plain http to any registry.
	Insecure bool
	// Waiting, if set, is told when the store waits for a lock another writer holds, and why.
	Waiting func(string)
}

// On names the store on the host it is on, if any.
func (e Env) On(ref string) string {
	if e.Host == nil {
		return ref
	}
	return ref + " on " + e.Host.String()
}

// A Kind is a kind of store: the first word of its references.
type Kind struct {
	Name string
	// Syntax is the reference as --help and the README write it: "oci:DIR[:REF]".
	Syntax string
	// Doc says in a few words what the store is.
	Doc string
	// Remote says whether the store can be on a host (-H).
	Remote bool
	// Check checks arg, the reference after "NAME:" ("" for none), before anything is
	// opened or dialed.
	Check func(arg string) error
	// Open opens a store of this kind.
	Open func(ctx context.Context, arg string, env Env) (Store, error)
}

var kinds []Kind

// Register adds a kind of store. Each store package calls it from init.
func Register(k Kind) {
	if slices.ContainsFunc(kinds, func(o Kind) bool { return o.Name == k.Name }) {
		panic("store kind registered twice: " + k.Name)
	}
	kinds = append(kinds, k)
}

// Kinds returns the registered kinds, in the order of the grammar's table.
func Kinds() []Kind {
	out := slices.Clone(kinds)
	order := []string{"docker", "podman", "containerd", "oci", "registry", "pool"}
	slices.SortStableFunc(out, func(a, b Kind) int {
		return index(order, a.Name) - index(order, b.Name)
	})
	return out
}

func index(order []string, name string) int {
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	return len(order)
}

// ErrInvalidReference: a source or store reference that cannot be parsed. Nothing was read
// or written.
var ErrInvalidReference = errors.New("invalid reference")

// Syntaxes lists every kind's syntax, "docker, podman, oci:DIR[:REF], …", for messages.
func Syntaxes() string {
	var out []string
	for _, k := range Kinds() {
		out = append(out, k.Syntax)
	}
	return strings.Join(out, ", ")
}

// Parse splits a store reference into its kind and the rest.
func Parse(ref string) (Kind, string, error) {
	name, arg, _ := strings.Cut(ref, ":")
	for _, k := range kinds {
		if k.Name != name {
			continue
		}
		if k.Check != nil {
			if err := k.Check(arg); err != nil {
				return Kind{}, "", fmt.Errorf("%w: %s: %w", ErrInvalidReference, ref, err)
			}
		}
		return k, arg, nil
	}
	return Kind{}, "", fmt.Errorf("%w: unknown store %q: use %s", ErrInvalidReference, ref, Syntaxes())
}

// IsStore reports whether ref starts with a kind's name: "oci:…", "pool:…", "docker".
func IsStore(ref string) bool {
	_, _, err := Parse(ref)
	return err == nil
}

// Open opens the store ref names in env.
func Open(ctx context.Context, ref string, env Env) (Store, error) {
	k, arg, err := Parse(ref)
	if err != nil {
		return nil, err
	}
	if env.Host != nil && !k.Remote {
		return nil, fmt.Errorf("%w: %s is reached from this machine, not on a host (-H)", ErrInvalidReference, k.Syntax)
	}
	if env.Socket != "" && k.Name != "docker" && k.Name != "containerd" {
		return nil, fmt.Errorf("%w: a socket path in the host reference goes with docker or containerd, not with %s", ErrInvalidReference, ref)
	}
	return k.Open(ctx, arg, env)
}

// NoArg is the Check of kinds that take no argument.
func NoArg(arg string) error {
	if arg != "" {
		return errors.New("takes no argument")
	}
	return nil
}

// DirArg is the Check of kinds whose argument is DIR[:REF].
func DirArg(arg string) error {
	dir, _ := CutRef(arg)
	if dir == "" || strings.ContainsFunc(dir, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return errors.New("name the directory, printable")
	}
	return nil
}

// CutRef splits "DIR[:REF]" at its first colon: the directory, and the image a reader
// picks in it.
func CutRef(arg string) (dir, ref string) {
	dir, ref, _ = strings.Cut(arg, ":")
	return dir, ref
}

// LoadedImages lists a bundle's images by tag, or by ID when untagged.
func LoadedImages(b *archive.Bundle) []Loaded {
	var out []Loaded
	for _, img := range b.Images {
		if len(img.RepoTags) == 0 {
			out = append(out, Loaded{Ref: img.ID().String(), ID: img.ID()})
		}
		for _, tag := range img.RepoTags {
			out = append(out, Loaded{Ref: tag, ID: img.ID()})
		}
	}
	return out
}

// Package store is ferry's model of the places images live: the docker daemon (classic or
// containerd image store), podman, an OCI image layout directory, a registry, a pool. Each
// kind is one package under store/ that describes itself (a Kind), registered where the
// program is assembled (package store/all); every verb reaches every kind through the same
// reference grammar (Parse, Open), on this machine or on a host over SSH (Env.Host).
//
// A Store says what it holds (Inventory) and takes verified bundles (Receive): thin where it
// can complete them, and nothing visible before every digest checked out. Optional abilities
// (abilities.go) are found by type assertion: a Reader gives images out, a Saver streams
// them as docker save does, a Streamer takes docker-archive byte streams (so one compressed
// stream can fan out to many hosts), a Stepper keeps what each load brought, a Fronted store
// has another behind it that takes images better, an Unpacker is better sent layers
// compressed, an OCIKeeper keeps a bundle's artifacts and multi-platform indexes.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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

// A Loaded image is an image now in a store.
type Loaded struct {
	Ref string // the tag, or the image ID when untagged
	ID  v1.Hash
}

// ReadOptions say how a Reader reads.
type ReadOptions struct {
	// Platform picks from multi-platform indexes; nil means the host's.
	Platform *v1.Platform
	// AllPlatforms keeps an index whole in the OCI part of the bundle.
	AllPlatforms bool
	// Referrers says which artifacts that refer to the images (signatures, attestations,
	// SBOMs) a source that keeps them takes along: none when zero.
	Referrers archive.Referrers
	// Write is how the images will be written: a reader that stages (docker) encodes for it.
	Write archive.WriteOptions
	// TempDir holds what a reader stages ("" for the system's temp dir).
	TempDir string
	// Progress, if set, is told how many source bytes were read so far, and an estimate of
	// the total (0 when unknown).
	Progress func(done, total int64)
	// Note, if set, is told what a reader left out of what the source holds: the other
	// platforms of a multi-platform image it took one platform of.
	Note func(string)
}

// NoteLeftOut tells o.Note, if set, which platforms of index m, that ref names, a reader left
// out for the one it took.
func (o ReadOptions) NoteLeftOut(ref string, m *v1.IndexManifest, took v1.Platform) {
	var left []string
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() && d.Platform != nil && !d.Platform.Satisfies(took) && !slices.Contains(left, d.Platform.String()) {
			left = append(left, d.Platform.String())
		}
	}
	if o.Note != nil && len(left) > 0 {
		o.Note(fmt.Sprintf("%s: took %s of a multi-platform image, left out %s (--all-platforms keeps them)", archive.Quote(ref), took.String(), strings.Join(left, ", ")))
	}
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
	// Stall, when not 0, bounds how long an exchange with a daemon on a host may make no
	// progress (each kind has its default).
	Stall time.Duration
}

// On names the store on the host it is on, if any.
func (e Env) On(ref string) string {
	if e.Host == nil {
		return ref
	}
	return ref + " on " + e.Host.String()
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

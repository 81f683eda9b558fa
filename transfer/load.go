package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store/docker"
)

// LoadOptions say where Load puts a bundle.
type LoadOptions struct {
	// To is "docker", "oci:DIR", "registry:HOST[/PREFIX]", or "" for the docker daemon when
	// one answers and the default OCI store (DefaultOCIDir) when none does.
	To string
	// Docker is the daemon for "docker"; nil means $DOCKER_HOST or the default socket.
	Docker *docker.Client
	// Insecure allows plain http to any registry.
	Insecure bool
	// Platform picks from multi-platform bundles without manifest.json; nil means the host's.
	Platform *v1.Platform
}

// A Loaded image is an image now in the store.
type Loaded struct {
	Ref string // the tag, or the image ID when untagged
	ID  v1.Hash
}

// A LoadResult says where a bundle went and what it held.
type LoadResult struct {
	Store  string // "docker", "oci:DIR" or "registry:…"
	Images []Loaded
	Bundle *archive.Bundle
}

// A store is a Sink that can say what it loaded.
type store interface {
	archive.Sink
	loaded() []Loaded
}

// Load reads a bundle from r and loads it into the store opts.To names. The store is
// changed only once the whole bundle was read and verified.
func Load(ctx context.Context, r io.Reader, opts LoadOptions) (*LoadResult, error) {
	where, st, err := openStore(ctx, opts)
	if err != nil {
		return nil, err
	}
	b, err := archive.Read(ctx, r, st, archive.ReadOptions{Platform: opts.Platform})
	if err != nil {
		return nil, err
	}
	return &LoadResult{Store: where, Images: st.loaded(), Bundle: b}, nil
}

func openStore(ctx context.Context, opts LoadOptions) (string, store, error) {
	switch {
	case opts.To == "" || opts.To == "docker":
		client, err := dockerClient(opts.Docker)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = client.Ping(pctx)
			cancel()
		}
		if err == nil {
			st, err := newDockerStore(ctx, client)
			return "docker", st, err
		}
		if opts.To == "docker" {
			return "", nil, err
		}
		dir, err := DefaultOCIDir()
		if err != nil {
			return "", nil, err
		}
		st, err := newOCIStore(dir)
		return "oci:" + dir, st, err
	case strings.HasPrefix(opts.To, "oci:"):
		dir := strings.TrimPrefix(opts.To, "oci:")
		st, err := newOCIStore(dir)
		return opts.To, st, err
	case strings.HasPrefix(opts.To, "registry:"):
		st, err := newRegistryStore(ctx, strings.TrimPrefix(opts.To, "registry:"), opts.Insecure)
		return opts.To, st, err
	}
	return "", nil, fmt.Errorf("%w: unknown store %q: use docker, oci:DIR or registry:HOST[/PREFIX]", ErrInvalidReference, opts.To)
}

// DefaultOCIDir is the OCI layout store ferry loads into when no docker daemon answers:
// $XDG_DATA_HOME/ferry/oci, else ~/.local/share/ferry/oci.
func DefaultOCIDir() (string, error) {
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "ferry", "oci"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errors.New("no home directory for the default OCI store: set XDG_DATA_HOME or pass --to")
	}
	return filepath.Join(home, ".local", "share", "ferry", "oci"), nil
}

package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/parts"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
)

// Options say how transfer reaches stores: hosts over SSH, registries over http(s).
type Options struct {
	SSH sshconn.Config
	// Insecure allows plain http to any registry.
	Insecure bool
	// Waiting, if set, is told when a store waits for a lock another writer holds, and why.
	Waiting func(string)
	// Note, if set, is told, once for each store, when ferry does less than it could there,
	// and why: docker on the containerd image store whose containerd it cannot reach gets
	// complete images through the Docker API.
	Note func(string)
	// Stall, when not 0, bounds how long an exchange with a daemon on a host may make no
	// progress.
	Stall time.Duration
}

// env is where stores are opened: host, if set, with socket.
func (o Options) env(host *sshconn.Client, socket string) store.Env {
	return store.Env{Host: host, Socket: socket, Insecure: o.Insecure, Waiting: o.Waiting, Stall: o.Stall}
}

// ErrInvalidReference: a source, image or store reference that cannot be parsed. Nothing
// was read or written.
var ErrInvalidReference = store.ErrInvalidReference

// OpenStore opens the store ref names: on this machine, or on host (an SSH destination,
// whose path, if any, is a daemon's socket) when host is not "". close releases it and its
// connection.
func OpenStore(ctx context.Context, ref, host string, opts Options) (st store.Store, close func(), err error) {
	if host == "" {
		st, err = store.Open(ctx, ref, opts.env(nil, ""))
		if err != nil {
			return nil, nil, err
		}
		return st, func() { st.Close() }, nil
	}
	d, err := sshconn.ParseDestination(host)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	if _, _, err := store.Parse(ref); err != nil {
		return nil, nil, err
	}
	c, err := sshconn.Dial(ctx, d, opts.SSH)
	if err != nil {
		return nil, nil, err
	}
	st, err = store.Open(ctx, ref, opts.env(c, d.Path))
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return st, func() { st.Close(); c.Close() }, nil
}

// A Source is one place images are read from: a store and the images in it, or a bundle
// file.
type Source struct {
	// Store is the store's reference ("docker", "oci:DIR", "pool:DIR"), or "" for a bundle.
	// A store whose references name a place of their own is named without the image.
	Store string
	// Host, if set, is the SSH destination the store is on.
	Host string
	// Refs are the images, in the store's words.
	Refs []string
	// File is the bundle file (or the first part of a split one).
	File string
}

func (s Source) String() string {
	if s.File != "" {
		return s.File
	}
	if s.Host != "" {
		return s.Store + " on " + s.Host
	}
	return s.Store
}

// Sources sorts source arguments into the places they are read from, in the order first
// named: a reference to a place of its own (oci:DIR[:REF], pool:DIR[:NAME]: store.Kind's
// Place) names its store, an existing file is a bundle, anything else is an image of the
// store from names (the default store when ""), on host if set.
func Sources(args []string, from, host string) ([]Source, error) {
	if len(args) == 0 {
		return nil, errors.New("no images named")
	}
	from = cmp.Or(from, store.DefaultRef())
	if _, _, err := store.Parse(from); err != nil {
		return nil, err
	}
	if host != "" {
		if _, err := sshconn.ParseDestination(host); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
		}
	}
	var out []Source
	add := func(st, h, ref string) {
		i := slices.IndexFunc(out, func(s Source) bool { return s.Store == st && s.Host == h })
		if i < 0 {
			out = append(out, Source{Store: st, Host: h})
			i = len(out) - 1
		}
		out[i].Refs = append(out[i].Refs, ref)
	}
	for _, arg := range args {
		switch k, rest, err := store.Parse(arg); {
		case k.Place:
			dir, ref := store.CutRef(rest)
			add(k.Name+":"+dir, "", ref)
		case errors.Is(err, store.ErrInvalidReference) && isPlace(arg):
			return nil, err
		case isFile(arg):
			out = append(out, Source{File: arg})
		default:
			if _, err := name.ParseReference(arg); err != nil {
				return nil, fmt.Errorf("%w: image %q: %w (a bundle file would have to exist)", ErrInvalidReference, arg, err)
			}
			add(from, host, arg)
		}
	}
	return out, nil
}

// isPlace reports whether arg starts with the name of a kind whose references name a place
// of their own: "oci:…".
func isPlace(arg string) bool {
	name, _, _ := strings.Cut(arg, ":")
	return slices.ContainsFunc(store.Kinds(), func(k store.Kind) bool { return k.Place && k.Name == name })
}

// isFile reports whether path is a bundle file, or the name of a split one.
func isFile(path string) bool {
	for _, p := range []string{path, path + ".000"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// Open reads the source's images once. st is the source's store, opened (nil for a bundle
// file).
func (s Source) Open(ctx context.Context, st store.Store, opts store.ReadOptions) (*store.Images, error) {
	if s.File != "" {
		in, size, err := parts.Open(s.File)
		if err != nil {
			return nil, err
		}
		defer in.Close()
		p := &store.Progress{Total: size, Report: opts.Progress}
		return store.Spooled(opts, func(sink archive.Sink) (*archive.Bundle, error) {
			b, err := archive.Read(ctx, p.Reader(in), sink, archive.ReadOptions{Platform: opts.Platform})
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", s.File, err)
			}
			return b, nil
		})
	}
	r, ok := st.(store.Reader)
	if !ok {
		return nil, fmt.Errorf("%w: images cannot be read from %s", ErrInvalidReference, st)
	}
	return r.Open(ctx, s.Refs, opts)
}

// one returns the only source of args: a bundle comes from one place.
func one(sources []Source) (Source, error) {
	if len(sources) != 1 {
		var names []string
		for _, s := range sources {
			names = append(names, s.String())
		}
		return Source{}, fmt.Errorf("a bundle comes from one source, not %s: save them separately", strings.Join(names, " and "))
	}
	return sources[0], nil
}

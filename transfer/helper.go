package transfer

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer/helper"
)

// Helper says whether a send runs ferry on its hosts, as a helper that rebuilds content
// deltas there (package helper).
type Helper int

const (
	// HelperNever sends as ferry always does without: through the store's socket, SFTP or
	// fixed command, layer by layer.
	HelperNever Helper = iota
	// HelperAuto runs the helper on each host whose store holds layers a content delta can
	// build on, and sends such a delta where it is smaller than the layers; a host where the
	// helper cannot run is sent layers, and a note says why.
	HelperAuto
	// HelperAlways runs the helper on every host and sends every host what it lacks as a
	// content delta; a host where the helper cannot run fails.
	HelperAlways
)

// ServeHelper is ferry as the helper of a send on this host: it answers one request of the
// helper protocol on in and out (its standard input and output), with the stores here. It
// keeps what it needs under the user's cache directory, ferry/helper.
func ServeHelper(ctx context.Context, in io.Reader, out io.Writer) error {
	cache, err := os.UserCacheDir()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return helper.Serve(ctx, in, out, filepath.Join(cache, "ferry", "helper"), filepath.Dir(exe), helperServer{})
}

// helperServer does what a helper is asked with the store code ferry runs everywhere.
type helperServer struct{}

// open opens the store req names on this machine: a kind that can be on a host, with the
// socket and the settings of its kind the sending side gave.
func (helperServer) open(ctx context.Context, req helper.Request) (store.Store, error) {
	k, _, err := store.Parse(req.Store)
	if err != nil {
		return nil, err
	}
	if err := k.OnHost(req.Socket); err != nil {
		return nil, err
	}
	for name, value := range req.Env {
		if !slices.Contains(k.Env, name) {
			return nil, fmt.Errorf("%w: %s is no setting of %s", ErrInvalidReference, name, k.Name)
		}
		if err := os.Setenv(name, value); err != nil {
			return nil, err
		}
	}
	return store.Open(ctx, req.Store, store.Env{Socket: req.Socket})
}

func (s helperServer) Load(ctx context.Context, req helper.Request, index func(*content.Index) error, delta func() (io.Reader, error), note func(string)) ([]string, error) {
	st, err := s.open(ctx, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	st, done := storeBehind(ctx, st, nil) // docker's containerd, not docker save: read and load there
	defer done()
	cache := content.NewCache(contentCache())
	var x *content.Index
	if req.Index {
		if x, err = storeIndex(ctx, st, cache, note); err != nil {
			return nil, err
		}
	} else { // a later load of the send: its base is picked from what the cache knows, if all
		x = fromCache(ctx, st, cache)
	}
	pre := startPrefetch(ctx, st, likelyBase(x, req.Repos))
	defer pre.close()
	if err := index(x); err != nil {
		return nil, err
	}
	r, err := delta()
	if err != nil {
		return nil, err
	}
	res, err := Load(ctx, r, LoadOptions{Options: Options{Note: note}, Store: st, base: pre})
	if err != nil {
		return nil, err
	}
	var loaded []string
	for _, l := range res.Images {
		loaded = append(loaded, l.Ref)
	}
	return loaded, nil
}

// likelyBase names the images x indexes, in the store's words, of repos: a rebuilt set's
// old images, which its delta most likely builds on. A nil x names none.
func likelyBase(x *content.Index, repos []string) []string {
	if x == nil {
		return nil
	}
	var base []string
	for _, l := range x.Layers {
		for _, r := range l.Refs {
			if ref, err := name.ParseReference(r); err == nil && slices.Contains(repos, ref.Context().Name()) && !slices.Contains(base, r) {
				base = append(base, r)
			}
		}
	}
	return base
}

// helperEnv is this machine's values of the variables the kind's stores are opened with.
func helperEnv(k store.Kind) map[string]string {
	env := map[string]string{}
	for _, name := range k.Env {
		if v, ok := os.LookupEnv(name); ok {
			env[name] = v
		}
	}
	return env
}

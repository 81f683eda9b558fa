package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
)

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:     "docker",
	Syntax:   "docker",
	Doc:      "the docker daemon ($DOCKER_HOST or the default socket). As a source, one `docker save` of all the images; as a store, `docker load`, thin where the daemon holds the layers left out; on the containerd image store, the daemon's containerd (namespace moby) where ferry reaches it, thin and resumed mid-blob, else complete images. On a host, its socket through the SSH connection",
	Remote:   true,
	Socket:   true,
	Default:  true,
	Complete: "containerd image store: complete images",
	Implicit: func(ctx context.Context) (string, error) {
		c, err := New("")
		if err == nil {
			err = NewStore(c).Answers(ctx)
		}
		if err != nil {
			return "", fmt.Errorf("no docker daemon answers (%w)", err)
		}
		return "", nil
	},
	Check: store.NoArg,
	Open: func(ctx context.Context, arg string, env store.Env) (store.Store, error) {
		if env.Host != nil {
			c := Dial(env.Host, env.Socket)
			c.Stall = cmp.Or(env.Stall, c.Stall)
			return &Store{Client: c, name: env.On("docker"), host: env.Host,
				socket: cmp.Or(env.Socket, strings.TrimPrefix(DefaultHost, "unix://"))}, nil
		}
		c, err := New("")
		if err != nil {
			return nil, err
		}
		return NewStore(c), nil
	},
}

// A Store is a docker daemon as a store: an Engine API client with what ferry does with it.
type Store struct {
	*Client
	name string
	// host is the SSH connection the daemon is reached through (nil: this machine), socket
	// the path of its socket there, if it is a unix socket.
	host   *sshconn.Client
	socket string
}

// NewStore makes a store of the daemon c talks to.
func NewStore(c *Client) *Store {
	s := &Store{Client: c, name: "docker"}
	if network, addr, err := parseHost(c.host); err == nil && network == "unix" {
		s.socket = addr
	}
	return s
}

func (s *Store) String() string { return s.name }

// Close does nothing: connections belong to whoever made the client.
func (s *Store) Close() error { return nil }

// Dial returns a client for the daemon behind socket (the default one when "") on the host
// c is connected to, reached through the SSH connection itself (what `ssh -L` does with a
// socket), with DefaultStall.
func Dial(c *sshconn.Client, socket string) *Client {
	if socket == "" {
		socket = strings.TrimPrefix(DefaultHost, "unix://")
	}
	client := NewWithDialer(func(ctx context.Context) (net.Conn, error) {
		conn, err := c.DialUnix(ctx, socket)
		switch {
		case errors.Is(err, sshconn.ErrNoSocket):
			err = fmt.Errorf("%w: is docker installed and running there? If its socket is elsewhere, name it: -H ssh://[USER@]HOST/PATH/docker.sock", err)
		case errors.Is(err, sshconn.ErrSocketDenied):
			err = fmt.Errorf("%w: add the user to the docker group there, or connect as a user who may use docker", err)
		case errors.Is(err, sshconn.ErrSocketRefused):
			err = fmt.Errorf("%w: is the docker daemon running there?", err)
		}
		return conn, err
	})
	client.Stall = DefaultStall
	return client
}

// TakesZstd reports whether the daemon's load takes zstd-compressed input: docker 23 and
// later (20.10 refuses it: "invalid tar header").
func (s *Store) TakesZstd(ctx context.Context) bool {
	info, err := s.Info(ctx)
	if err != nil {
		return false
	}
	major, _, _ := strings.Cut(info.ServerVersion, ".")
	n, err := strconv.Atoi(major)
	return err == nil && n >= 23
}

// Answers reports whether the daemon answers within a few seconds.
func (s *Store) Answers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return s.Ping(ctx)
}

// Inventory lists the layer chains of every image the daemon holds. A daemon on the
// containerd image store takes complete images only, and its inventory says so.
func (s *Store) Inventory(ctx context.Context) (*dedupe.Inventory, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	images, err := s.Images(ctx)
	if err != nil {
		return nil, err
	}
	inv := dedupe.NewInventory(dedupe.StoreDocker)
	inv.Complete = info.ContainerdSnapshotter
	for _, summary := range images {
		id, err := v1.NewHash(summary.ID)
		if err != nil {
			return nil, fmt.Errorf("the docker daemon lists an image of ID %s: %w", archive.Quote(summary.ID), err)
		}
		img, err := s.Inspect(ctx, id.String())
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		diffIDs := make([]v1.Hash, len(img.RootFS.Layers))
		for i, d := range img.RootFS.Layers {
			if diffIDs[i], err = v1.NewHash(d); err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", id, archive.Quote(d), err)
			}
		}
		inv.AddImage(diffIDs, nil)
		// Named by its ID and by its key too: docker on the containerd image store gives an
		// image it loaded from a legacy archive a manifest, and an ID, of its own.
		inv.AddNamed([]v1.Hash{img.key(diffIDs), id}, tagsOf(summary.RepoTags))
	}
	return inv, nil
}

// tagsOf drops docker's "<none>:<none>" from an image's tags.
func tagsOf(repoTags []string) []string {
	var tags []string
	for _, t := range repoTags {
		if t != "<none>:<none>" {
			tags = append(tags, t)
		}
	}
	return tags
}

// Receive streams a bundle into the daemon's load as it is read. docker load unpacks its
// whole input before it registers anything, so a stream aborted before its end loads
// nothing; manifest.json goes last, after verification and after checking that the daemon
// holds every layer a thin bundle leaves out.
func (s *Store) Receive(ctx context.Context) (store.Receiver, error) {
	return store.StreamReceiver(ctx, s.LoadStream, s.checkThin), nil
}

// LoadStream streams r into the daemon's load: a docker archive, plain or compressed.
func (s *Store) LoadStream(ctx context.Context, r io.Reader) ([]string, error) {
	return s.Load(ctx, r, nil)
}

// checkThin makes sure docker takes the images (archive.DockerLoadable) and the daemon holds
// every layer the bundle leaves out.
func (s *Store) checkThin(ctx context.Context, b *archive.Bundle) error {
	if err := archive.DockerLoadable(b); err != nil {
		return err
	}
	if !thin(b) {
		return nil
	}
	have, err := s.Inventory(ctx)
	if err != nil {
		return err
	}
	return Refuse(have, b)
}

func thin(b *archive.Bundle) bool {
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if l.Missing {
				return true
			}
		}
	}
	return false
}

// Refuse says why a daemon whose inventory is have cannot load b, if it cannot: b leaves
// out layers the daemon lacks.
func Refuse(have *dedupe.Inventory, b *archive.Bundle) error {
	lacking := have.Lacks(b)
	switch {
	case len(lacking) == 0:
		return nil
	case have.Complete:
		return fmt.Errorf("%w: the docker daemon keeps images in the containerd image store, which does not complete bundles that leave out layers: "+
			"give it the complete images (a delta made with --have of its own inventory comes out complete)", archive.ErrMissingBlob)
	}
	return fmt.Errorf("%w: the bundle leaves out %d layers the docker daemon does not have (diffIDs %s): load the bundle they come from first",
		archive.ErrMissingBlob, len(lacking), strings.Join(lacking, ", "))
}

// Tagged lists the tags of every image the daemon holds, sorted.
func (s *Store) Tagged(ctx context.Context) ([]string, error) {
	images, err := s.Images(ctx)
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, img := range images {
		for _, tag := range img.RepoTags {
			if tag != "<none>:<none>" {
				tags = append(tags, tag)
			}
		}
	}
	if len(tags) == 0 {
		return nil, errors.New("the docker daemon has no tagged images")
	}
	slices.Sort(tags)
	return tags, nil
}

// RemoveSteps removes the step images whose layers are the first of one of images (each
// given by its diffIDs): the images hold their layers now, so only the step's config goes.
func (s *Store) RemoveSteps(ctx context.Context, images [][]v1.Hash) error {
	list, err := s.Images(ctx)
	if err != nil {
		return err
	}
	for _, summary := range list {
		if _, ok := summary.Labels[store.StepLabel]; !ok || len(tagsOf(summary.RepoTags)) > 0 {
			continue
		}
		img, err := s.Inspect(ctx, summary.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(images, func(diffIDs []v1.Hash) bool { return leads(img.RootFS.Layers, diffIDs) }) {
			continue
		}
		if err := s.Remove(ctx, summary.ID); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// leads reports whether layers are the first of diffIDs.
func leads(layers []string, diffIDs []v1.Hash) bool {
	if len(layers) > len(diffIDs) {
		return false
	}
	for i, l := range layers {
		if l != diffIDs[i].String() {
			return false
		}
	}
	return true
}

package containerd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
)

// Defaults, as ctr has them, except the namespace: Kubernetes' (ctr's is "default").
const (
	DefaultSocket      = "/run/containerd/containerd.sock"
	DefaultNamespace   = CRINamespace
	DefaultSnapshotter = "overlayfs"
)

// CRINamespace is where containerd's CRI plugin, and so kubelet, keeps images.
const CRINamespace = "k8s.io"

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:   "containerd",
	Syntax: "containerd[:NAMESPACE]",
	Doc: "containerd's images in NAMESPACE (k8s.io, unless $CONTAINERD_NAMESPACE names another), at $CONTAINERD_ADDRESS or " + DefaultSocket +
		". As a source, blobs from its content store; as a store, only the blobs it lacks (resumed mid-blob after a cut), then unpacked " +
		"($CONTAINERD_SNAPSHOTTER, overlayfs) and named. On a host, its socket through the SSH connection",
	Remote: true,
	Socket: true,
	Check: func(arg string) error {
		if arg == "" {
			return nil
		}
		return identifiers.Validate(arg)
	},
	Open: func(ctx context.Context, arg string, env store.Env) (store.Store, error) {
		return Open(ctx, arg, env)
	},
}

// A Store is the images of one namespace of a containerd.
type Store struct {
	client      *client.Client
	namespace   string
	snapshotter string
	name        string
}

// Open connects to the containerd env names (this machine's, or the one behind env.Socket
// or the default socket on env.Host) and opens namespace ("" for $CONTAINERD_NAMESPACE,
// else DefaultNamespace). Images are unpacked into $CONTAINERD_SNAPSHOTTER, else
// DefaultSnapshotter.
func Open(ctx context.Context, namespace string, env store.Env) (*Store, error) {
	if namespace == "" {
		namespace = os.Getenv("CONTAINERD_NAMESPACE")
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	if err := identifiers.Validate(namespace); err != nil {
		return nil, fmt.Errorf("%w: containerd namespace: %w", store.ErrInvalidReference, err)
	}
	var dial func(ctx context.Context) (net.Conn, error)
	if env.Host != nil {
		dial = Dial(env.Host, env.Socket)
	} else {
		socket := strings.TrimPrefix(os.Getenv("CONTAINERD_ADDRESS"), "unix://")
		if socket == "" {
			socket = DefaultSocket
		}
		dial = func(ctx context.Context) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, fmt.Errorf("cannot reach containerd at %s: %w: is it running? set CONTAINERD_ADDRESS to use another socket", socket, err)
			}
			return conn, nil
		}
	}
	s, err := New(ctx, dial, namespace, env.Stall)
	if err != nil {
		return nil, err
	}
	s.name = env.On("containerd:" + namespace)
	return s, nil
}

// New makes a store of namespace in the containerd whose connections dial makes. It dials
// once first, so a containerd that cannot be reached is an error here, in dial's words.
// Every call to containerd ends when it makes no progress for stall (DefaultStall when 0).
func New(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), namespace string, stall time.Duration) (*Store, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	conn.Close()
	c, err := client.New("/containerd.sock", // a placeholder: dial finds containerd
		client.WithDefaultNamespace(namespace),
		client.WithDialOpts(append(stallOptions(cmp.Or(stall, DefaultStall)),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return dial(ctx) }),
		)))
	if err != nil {
		return nil, fmt.Errorf("containerd client: %w", err)
	}
	snapshotter := os.Getenv("CONTAINERD_SNAPSHOTTER")
	if snapshotter == "" {
		snapshotter = DefaultSnapshotter
	}
	return &Store{client: c, namespace: namespace, snapshotter: snapshotter, name: "containerd:" + namespace}, nil
}

// Dial returns a dialer of the containerd socket (DefaultSocket when "") on the host c is
// connected to, reached through the SSH connection itself: nothing runs on the host.
func Dial(c *sshconn.Client, socket string) func(ctx context.Context) (net.Conn, error) {
	if socket == "" {
		socket = DefaultSocket
	}
	return func(ctx context.Context) (net.Conn, error) {
		conn, err := c.DialUnix(ctx, socket)
		switch {
		case errors.Is(err, sshconn.ErrNoSocket):
			err = fmt.Errorf("%w: is containerd running there? If its socket is elsewhere (k3s: /run/k3s/containerd/containerd.sock), "+
				"name it: -H ssh://[USER@]HOST/PATH/containerd.sock", err)
		case errors.Is(err, sshconn.ErrSocketDenied):
			err = fmt.Errorf("%w: containerd's socket is root's: connect as root", err)
		case errors.Is(err, sshconn.ErrSocketRefused):
			err = fmt.Errorf("%w: is containerd running there?", err)
		}
		return conn, err
	}
}

func (s *Store) String() string { return s.name }

// Namespace is the namespace the store's images are in.
func (s *Store) Namespace() string { return s.namespace }

// Snapshotter is the snapshotter images are unpacked into.
func (s *Store) Snapshotter() string { return s.snapshotter }

// WithSnapshotter sets the snapshotter images are unpacked into.
func (s *Store) WithSnapshotter(name string) *Store {
	s.snapshotter = name
	return s
}

// Close closes the store's connection.
func (s *Store) Close() error { return s.client.Close() }

// notFound reports whether err says containerd has no such thing.
func notFound(err error) bool { return errdefs.IsNotFound(err) }

// Revision is the revision of the containerd the store talks to, as it reports it (what
// docker's info calls ContainerdCommit.ID).
func (s *Store) Revision(ctx context.Context) (string, error) {
	v, err := s.client.Version(ctx)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s, err)
	}
	return v.Revision, nil
}

// Targets lists the namespace's images: each name and the digest of what it points at.
func (s *Store) Targets(ctx context.Context) (map[string]string, error) {
	imgs, err := s.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: listing images: %w", s, err)
	}
	out := make(map[string]string, len(imgs))
	for _, img := range imgs {
		out[img.Name] = img.Target.Digest.String()
	}
	return out, nil
}

// Unname removes the image names given; what they held goes with containerd's next
// garbage collection.
func (s *Store) Unname(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := s.client.ImageService().Delete(ctx, n); err != nil && !notFound(err) {
			return fmt.Errorf("%s: removing %s: %w", s, n, err)
		}
	}
	return nil
}

// Tagged lists the names of the namespace's images that are tags (send --all, a content
// index), sorted: not the digest-named ones (NAME@sha256:…) containerd also keeps.
func (s *Store) Tagged(ctx context.Context) ([]string, error) {
	targets, err := s.Targets(ctx)
	if err != nil {
		return nil, err
	}
	var tags []string
	for name := range targets {
		if _, err := archive.ParseTag(name); err == nil {
			tags = append(tags, name)
		}
	}
	slices.Sort(tags)
	return tags, nil
}

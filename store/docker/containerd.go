package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/containerd"
)

// A daemon on the containerd image store keeps its images in a containerd, in the namespace
// it runs its containers in (moby). docker's load cannot complete a thin bundle there, but
// that containerd can: where ferry reaches its socket (on a host, through the same SSH
// connection), images go there as into any containerd store, only the blobs it lacks,
// resumed mid-blob after a cut, unpacked into docker's snapshotter and named as docker
// names them.

// Well-known places of a daemon's containerd, after what docker 27 and later say (Info):
// the system's containerd (docker's packages start dockerd with --containerd pointing
// there), and the one dockerd starts itself, under its exec root, /var/run/docker by
// default, which is beside its socket (see candidates).
const (
	systemContainerd  = "/run/containerd/containerd.sock"
	managedContainerd = "/var/run/docker/containerd/containerd.sock"
	defaultNamespace  = "moby"
)

// Behind returns the containerd the daemon keeps its images in, as a store whose receiver
// names images where docker lists them, and checks that it does: nil, nil for a daemon on
// its classic store, or one that does not answer (what is done with it next says so). When
// the daemon's containerd cannot be reached or is not found, the error says why for every
// place tried.
func (s *Store) Behind(ctx context.Context) (store.Store, error) {
	info, err := s.Info(ctx)
	if err != nil || !info.ContainerdSnapshotter {
		return nil, nil
	}
	ns := defaultNamespace
	var said string
	if info.Containerd != nil {
		said = strings.TrimPrefix(info.Containerd.Address, "unix://")
		if info.Containerd.Namespaces.Containers != "" {
			ns = info.Containerd.Namespaces.Containers
		}
	}
	var why []string
	for _, socket := range s.candidates(said) {
		ctd, err := containerd.New(ctx, s.dialer(socket), ns, s.Client.Stall)
		if err == nil {
			if err = s.keepsImagesIn(ctx, ctd, info); err == nil {
				ctd.WithSnapshotter(info.Driver)
				return &viaContainerd{Store: ctd, d: s, name: s.name + " via containerd:" + ns}, nil
			}
			ctd.Close()
		}
		why = append(why, socket+": "+reason(err))
	}
	return nil, fmt.Errorf("%s keeps its images in containerd, which ferry cannot use (%s)", s, strings.Join(why, "; "))
}

// candidates are the sockets where the daemon's containerd may be: where the daemon says
// (docker 27 and later), else the system's and the one dockerd starts under its exec root.
// An exec root is usually beside the daemon's socket, named docker (/var/run/docker.sock,
// /var/run/docker), so a daemon whose socket is elsewhere is looked for there too.
func (s *Store) candidates(said string) []string {
	if said != "" {
		return []string{said}
	}
	out := []string{systemContainerd, managedContainerd}
	if s.socket != "" {
		beside := path.Join(path.Dir(s.socket), "docker", "containerd", "containerd.sock")
		if !slices.Contains(out, beside) {
			out = append(out, beside)
		}
	}
	return out
}

// dialer connects to socket where the daemon is: on this machine, or on its host through
// the SSH connection.
func (s *Store) dialer(socket string) func(ctx context.Context) (net.Conn, error) {
	if s.host != nil {
		return func(ctx context.Context) (net.Conn, error) { return s.host.DialUnix(ctx, socket) }
	}
	return func(ctx context.Context) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", socket)
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err // "connect: no such file or directory", without the address again
		}
		return conn, err
	}
}

// keepsImagesIn checks that ctd is the containerd the daemon keeps its images in: the
// revision the daemon reports, and every tagged image docker lists there under the same
// digest (docker's image IDs on the containerd image store are the digests containerd's
// images point at). A daemon with no images cannot tell one containerd from another this
// way: the receiver checks again, once it has named the images.
func (s *Store) keepsImagesIn(ctx context.Context, ctd *containerd.Store, info Info) error {
	rev, err := ctd.Revision(ctx)
	if err != nil {
		return err
	}
	if info.ContainerdCommit.ID != "" && rev != "" && rev != info.ContainerdCommit.ID {
		return fmt.Errorf("containerd %s there, the daemon's is %s", rev, info.ContainerdCommit.ID)
	}
	targets, err := ctd.Targets(ctx)
	if err != nil {
		return err
	}
	images, err := s.Images(ctx)
	if err != nil {
		return err
	}
	for _, img := range images {
		for _, tag := range tagsOf(img.RepoTags) {
			if n := containerd.FullName(tag); targets[n] != img.ID {
				return fmt.Errorf("not the daemon's containerd: its namespace %s lacks docker's image %s (%s)", ctd.Namespace(), tag, img.ID)
			}
		}
	}
	return nil
}

// reason says in few words why a containerd socket could not be used.
func reason(err error) string {
	for _, e := range []error{sshconn.ErrNoSocket, sshconn.ErrSocketDenied, sshconn.ErrSocketRefused} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}

// viaContainerd is a daemon's containerd as the store its images go into.
type viaContainerd struct {
	*containerd.Store
	d    *Store
	name string
}

func (v *viaContainerd) String() string { return v.name }

func (v *viaContainerd) Receive(ctx context.Context) (store.Receiver, error) {
	r, err := v.Store.Receive(ctx)
	if err != nil {
		return nil, err
	}
	return &listed{Receiver: r, v: v}, nil
}

// listed is a receiver into a daemon's containerd that checks, once the images are named,
// that docker lists them: if it does not, that containerd was not the daemon's, the names
// it did not hold before are removed, and the receive fails.
type listed struct {
	store.Receiver
	v *viaContainerd
}

func (l *listed) Resumed() int64 {
	if r, ok := l.Receiver.(store.Resumer); ok {
		return r.Resumed()
	}
	return 0
}

func (l *listed) Commit(ctx context.Context, b *archive.Bundle) error {
	before, err := l.v.Targets(ctx)
	if err != nil {
		return err
	}
	if err := l.Receiver.Commit(ctx, b); err != nil {
		return err
	}
	targets, err := l.v.Targets(ctx)
	if err != nil {
		return err
	}
	var names []string
	var missing error
	for _, img := range l.Loaded() {
		n := containerd.FullName(img.Ref)
		if n == "" || strings.HasPrefix(img.Ref, "sha256:") {
			continue // untagged: docker lists it by ID only
		}
		if _, ok := before[n]; !ok {
			names = append(names, n)
		}
		got, err := l.v.d.Inspect(ctx, img.Ref)
		if err == nil && got.ID != targets[n] {
			err = fmt.Errorf("docker's %s is %s, containerd's %s", img.Ref, got.ID, targets[n])
		}
		if err != nil && missing == nil {
			missing = err
		}
	}
	if missing != nil {
		l.v.Unname(ctx, names...)
		return fmt.Errorf("%s: named the images in containerd, but docker does not list them (%w): "+
			"that containerd is not the one docker keeps its images in; the names it did not hold before were removed", l.v, missing)
	}
	return nil
}

// Package podman is podman as a store: `podman load` takes docker archives, and `podman
// images` says what it holds. On a host, ferry runs exactly those commands, constants with no
// user input in them, over an SSH session; here it runs the podman on $PATH, which also gives
// images out (`podman save`, the image names as arguments, no shell).
package podman

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
)

// Kind describes the store kind; the program registers it (package store/all).
var Kind = store.Kind{
	Name:     "podman",
	Syntax:   "podman",
	Doc:      "podman's image store. As a source (on this machine), `podman save`; as a store, complete images on the stdin of `podman load`, and `podman images` for what it holds. On a host, the same commands over SSH (not a source there)",
	Remote:   true,
	Complete: "podman: complete images",
	Check:    store.NoArg,
	Open: func(_ context.Context, arg string, env store.Env) (store.Store, error) {
		if env.Host != nil {
			return &Store{name: env.On("podman"), run: env.Host.Run}, nil
		}
		return Local("podman"), nil
	},
}

// The commands ferry runs. They are constants: nothing the user typed goes into them.
const (
	loadCmd   = "podman load"
	imagesCmd = "podman images --format json"
)

// A Store is podman. podman 4 loads neither thin bundles nor gzip-compressed docker
// archives: it gets complete images, uncompressed.
type Store struct {
	name string
	run  func(ctx context.Context, cmd string, stdin io.Reader) (string, error)
	bin  string // podman on this machine; "" on a host
}

// Local is the podman that the program bin (a name on $PATH, or a path) is on this machine.
func Local(bin string) *Store {
	return &Store{name: "podman", bin: bin, run: func(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
		var out bytes.Buffer
		err := execLocal(ctx, bin, strings.Fields(cmd)[1:], stdin, &out)
		if err != nil {
			err = fmt.Errorf("%s: %w", cmd, err)
		}
		return out.String(), err
	}}
}

// Open reads images as `podman save` writes them, one docker archive, into a spool: refs are
// image names as podman knows them.
func (s *Store) Open(ctx context.Context, refs []string, opts store.ReadOptions) (*store.Images, error) {
	if s.bin == "" {
		return nil, errors.New("reading images from podman on a host is not supported: run ferry there")
	}
	args := []string{"save", "--format", "docker-archive"}
	if len(refs) > 1 {
		args = append(args, "--multi-image-archive")
	}
	for _, ref := range refs {
		if _, err := archive.ParseTag(ref); err != nil {
			return nil, fmt.Errorf("podman image %s: %w", archive.Quote(ref), err)
		}
	}
	args = append(append(args, "--"), refs...)
	return store.Spooled(opts, func(sink archive.Sink) (*archive.Bundle, error) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(execLocal(ctx, s.bin, args, nil, pw)) }()
		b, err := archive.Read(ctx, pr, sink, archive.ReadOptions{})
		pr.Close()
		if err != nil {
			return nil, fmt.Errorf("podman save: %w", err)
		}
		return b, nil
	})
}

func (s *Store) String() string { return s.name }
func (s *Store) Close() error   { return nil }

// Inventory says that podman takes complete images only, and which images it holds: by
// ID (the config digest) and manifest digest, with their names.
func (s *Store) Inventory(ctx context.Context) (*dedupe.Inventory, error) {
	out, err := s.command(ctx, imagesCmd, nil)
	if err != nil {
		return nil, err
	}
	var images []struct {
		ID     string `json:"Id"`
		Digest string
		Names  []string
	}
	if err := json.Unmarshal([]byte(out), &images); err != nil {
		return nil, fmt.Errorf("reading what %s printed: %w", imagesCmd, err)
	}
	inv := dedupe.NewInventory(dedupe.StoreDocker)
	inv.Complete = true
	for _, img := range images {
		var digests []v1.Hash
		for _, d := range []string{"sha256:" + strings.TrimPrefix(img.ID, "sha256:"), img.Digest} {
			if h, err := v1.NewHash(d); err == nil {
				digests = append(digests, h)
			}
		}
		inv.AddNamed(digests, tagsOf(img.Names))
	}
	return inv, nil
}

// tagsOf lists the tags a bundle may give an image podman names names: podman names a short
// name it loads localhost/NAME, so that localhost/x:1 is what it makes of x:1 as well.
func tagsOf(names []string) []string {
	var tags []string
	for _, n := range names {
		tags = append(tags, n)
		if short, ok := strings.CutPrefix(n, "localhost/"); ok {
			tags = append(tags, short)
		}
	}
	return tags
}

// Receive forwards a bundle into `podman load` as it is read, uncompressed. podman stores
// nothing from a stream cut short.
func (s *Store) Receive(ctx context.Context) (store.Receiver, error) {
	return store.StreamReceiver(ctx, s.load, complete), nil
}

// complete refuses thin bundles, which podman cannot complete, and images podman's
// docker-archive reader refuses.
func complete(_ context.Context, b *archive.Bundle) error {
	if err := archive.HasRootFS(b); err != nil {
		return err
	}
	for _, blob := range b.Reachable() {
		if blob.Missing {
			return fmt.Errorf("%w: podman does not load bundles that leave out layers: load the complete bundle", archive.ErrMissingBlob)
		}
	}
	return nil
}

// load runs `podman load` with r on its standard input.
func (s *Store) load(ctx context.Context, r io.Reader) ([]string, error) {
	out, err := s.command(ctx, loadCmd, r)
	if err != nil {
		return nil, err
	}
	return loaded(out), nil
}

func (s *Store) command(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
	out, err := s.run(ctx, cmd, stdin)
	var ce *sshconn.CommandError
	var ee *exec.Error
	switch {
	case errors.As(err, &ce) && ce.Status == 127:
		return "", fmt.Errorf("%w: is podman installed there, and on the PATH of a non-interactive shell?", err)
	case errors.As(err, &ee):
		return "", fmt.Errorf("%w: is podman installed?", err)
	case err != nil && stdin != nil:
		return "", fmt.Errorf("%w; podman loads nothing from an incomplete stream: %s is as it was", err, s.name)
	}
	return out, err
}

// execLocal runs podman (bin) on this machine with args, stdin (if set) on its standard
// input and its output to stdout. If reading stdin fails, podman is killed before it can see
// the end of its input, so it never takes a stream cut short for a whole one.
func execLocal(ctx context.Context, bin string, args []string, stdin io.Reader, stdout io.Writer) error {
	c := exec.CommandContext(ctx, bin, args...)
	// podman in a group of its own, killed whole: a wrapper's children (sudo, nsenter)
	// must not outlive it holding its output open.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = stdout, &stderr
	in, err := c.StdinPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	var copyErr error
	if stdin != nil {
		_, copyErr = io.Copy(in, stdin)
	}
	if copyErr != nil && !errors.Is(copyErr, io.ErrClosedPipe) {
		c.Cancel()
		c.Wait()
		return copyErr
	}
	in.Close()
	if err := c.Wait(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// loaded reads the references podman load says it loaded: "Loaded image: REF" or
// "Loaded image(s): REF,REF" lines. One that is no reference is quoted.
func loaded(out string) []string {
	var refs []string
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, "Loaded image")
		if !ok {
			continue
		}
		_, list, ok := strings.Cut(rest, ": ")
		if !ok {
			continue
		}
		for _, ref := range strings.Split(list, ",") {
			if ref = strings.TrimSpace(ref); ref == "" {
				continue
			}
			if _, err := name.ParseReference(ref); err != nil {
				ref = archive.Quote(ref) // what the host printed, fit for a terminal
			}
			refs = append(refs, ref)
		}
	}
	return refs
}

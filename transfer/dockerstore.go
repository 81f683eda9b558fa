package transfer

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store/docker"
)

// dockerStore streams a bundle into `docker load` as it is read. docker load unpacks its
// whole input before it registers anything, so a stream aborted before its end (Abort) loads
// nothing; manifest.json goes last, after verification and after checking that the daemon
// holds every layer a thin bundle leaves out.
type dockerStore struct {
	client *docker.Client
	pw     *io.PipeWriter
	tw     tarForward
	done   chan struct{}
	err    error // from the daemon, once done is closed
	images []Loaded
}

func newDockerStore(ctx context.Context, client *docker.Client) (*dockerStore, error) {
	pr, pw := io.Pipe()
	s := &dockerStore{client: client, pw: pw, tw: newTarForward(pw), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_, s.err = client.Load(ctx, pr, nil)
		pr.CloseWithError(errors.Join(s.err, errors.New("docker daemon stopped reading the load stream")))
	}()
	return s, nil
}

func (s *dockerStore) Entry(_ context.Context, e archive.Entry, r io.Reader) error {
	return s.daemonErr(s.tw.entry(e, r))
}

func (s *dockerStore) Commit(ctx context.Context, b *archive.Bundle) error {
	if err := s.checkThin(ctx, b); err != nil {
		return err
	}
	if err := s.tw.finish(b); err != nil {
		return s.daemonErr(err)
	}
	s.pw.Close()
	<-s.done
	if s.err != nil {
		return s.err
	}
	s.images = loadedImages(b)
	return nil
}

// tarForward writes a bundle to a docker load stream as archive.Read passes its entries:
// each data entry under its own name, then at the end manifest.json naming the blobs where
// the entries put them. It is what makes a stream docker loads whole or not at all. Writes
// are gathered into large ones: entries arrive in small pieces, and each write to an SSH
// channel or an HTTP upload is a packet or a chunk of its own.
type tarForward struct {
	tw  *tar.Writer
	bw  *bufio.Writer
	buf []byte // for copying entries: readers fed through a pipe hand over what fits
}

func newTarForward(w io.Writer) tarForward {
	bw := bufio.NewWriterSize(w, copyBuffer)
	return tarForward{tw: tar.NewWriter(bw), bw: bw, buf: make([]byte, copyBuffer)}
}

// copyBuffer is the size of the pieces streams are gathered into on their way to a host.
const copyBuffer = 1 << 20

func (f tarForward) entry(e archive.Entry, r io.Reader) error {
	if err := f.tw.WriteHeader(&tar.Header{Name: e.Name, Size: e.Size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := io.CopyBuffer(f.tw, r, f.buf)
	return err
}

// finish writes manifest.json for b, read and verified, and ends the tar stream.
func (f tarForward) finish(b *archive.Bundle) error {
	manifest, err := archive.ManifestJSON(b.Images, func(blob *archive.Blob) string {
		if blob.Path != "" {
			return blob.Path
		}
		return "blobs/sha256/" + blob.Digest.Hex // left out: the daemon has it
	})
	if err != nil {
		return err
	}
	if err := f.tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: int64(len(manifest)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := f.tw.Write(manifest); err != nil {
		return err
	}
	if err := f.tw.Close(); err != nil {
		return err
	}
	return f.bw.Flush()
}

// daemonErr prefers the daemon's own error to the broken pipe it caused.
func (s *dockerStore) daemonErr(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-s.done:
		if s.err != nil {
			return s.err
		}
	default:
	}
	return err
}

func (s *dockerStore) Abort(err error) {
	s.pw.CloseWithError(err)
	<-s.done
}

func (s *dockerStore) loaded() []Loaded { return s.images }

// checkThin makes sure the daemon holds every layer the bundle leaves out.
func (s *dockerStore) checkThin(ctx context.Context, b *archive.Bundle) error {
	var thin []*archive.Image
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if l.Missing {
				thin = append(thin, img)
				break
			}
		}
	}
	if len(thin) == 0 {
		return nil
	}
	info, err := s.client.Info(ctx)
	if err != nil {
		return err
	}
	if info.ContainerdSnapshotter {
		return errors.New("the docker daemon keeps images in the containerd image store, which does not load bundles that leave out layers: send it a complete bundle")
	}
	have, err := DockerInventory(ctx, s.client)
	if err != nil {
		return err
	}
	var lacking []string
	for _, img := range thin {
		for i, l := range img.Layers {
			if l.Missing && !have.Has(img, i) {
				lacking = append(lacking, l.DiffID.String())
			}
		}
	}
	if len(lacking) > 0 {
		return fmt.Errorf("%w: the bundle leaves out %d layers the docker daemon does not have (diffIDs %s): load the bundle they come from first",
			archive.ErrMissingBlob, len(lacking), strings.Join(lacking, ", "))
	}
	return nil
}

// DockerInventory returns the inventory of the layers of every image the daemon holds.
func DockerInventory(ctx context.Context, client *docker.Client) (*dedupe.Inventory, error) {
	images, err := client.Images(ctx)
	if err != nil {
		return nil, err
	}
	inv := dedupe.NewInventory(dedupe.StoreDocker)
	for _, summary := range images {
		img, err := client.Inspect(ctx, summary.ID)
		if errors.Is(err, docker.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		diffIDs := make([]v1.Hash, len(img.RootFS.Layers))
		for i, d := range img.RootFS.Layers {
			if diffIDs[i], err = v1.NewHash(d); err != nil {
				return nil, fmt.Errorf("image %s: layer %q: %w", summary.ID, d, err)
			}
		}
		inv.AddImage(diffIDs, nil)
	}
	return inv, nil
}

// loadedImages lists a bundle's images by tag, or by ID when untagged.
func loadedImages(b *archive.Bundle) []Loaded {
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

package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store/docker"
)

// SaveOptions say what Save reads and how it writes.
type SaveOptions struct {
	// From is FromDocker (the default) or FromRegistry; images written oci:DIR[:tag] come
	// from OCI layout directories whatever From says.
	From string
	// Docker is the daemon for FromDocker; nil means $DOCKER_HOST or the default socket.
	Docker *docker.Client
	// Platform picks from multi-platform indexes; nil means the host's.
	Platform *v1.Platform
	// AllPlatforms keeps a registry or OCI index whole in the OCI part of the bundle.
	AllPlatforms bool
	// Insecure allows plain http to any registry.
	Insecure bool
	// Have, if set, is what the destination holds: Save leaves those layers out (a delta).
	Have  *dedupe.Inventory
	Write archive.WriteOptions
	// TempDir holds the spool for docker sources ("" for the system's temp dir).
	TempDir string
	// Progress, if set, is told how many source bytes were read so far, and an estimate
	// of the total (0 when unknown).
	Progress func(done, total int64)
}

func (o SaveOptions) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return archive.HostPlatform()
}

// Images are images read from their source once, ready to be written as bundles — whole or
// thinned for a destination — any number of times, concurrently.
type Images struct {
	// Bundle describes the images; every blob is present.
	Bundle *archive.Bundle
	src    archive.BlobSource
	close  func() error
}

// Write writes b, which is im.Bundle or a thinned copy of it (archive.Bundle.Thin), to w.
func (im *Images) Write(ctx context.Context, w io.Writer, b *archive.Bundle, opts archive.WriteOptions) error {
	return archive.Write(ctx, w, b, im.src, opts)
}

// Close releases what reading the images staged.
func (im *Images) Close() error { return im.close() }

// Save reads images from their source and writes one bundle of them to w.
func Save(ctx context.Context, w io.Writer, images []string, opts SaveOptions) (*archive.Bundle, error) {
	im, err := Open(ctx, images, opts)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	b := im.Bundle
	if opts.Have != nil {
		b = opts.Have.Thin(b)
	}
	return b, im.Write(ctx, w, b, opts.Write)
}

// Open reads images from their source: docker images through one streamed `docker save`
// into a spool that encodes for opts.Write as it receives; registry and OCI layout images as
// descriptors whose blobs are fetched when written.
func Open(ctx context.Context, images []string, opts SaveOptions) (*Images, error) {
	refs, fromDocker, err := classify(images, opts)
	if err != nil {
		return nil, err
	}
	if fromDocker {
		return openDocker(ctx, refs, opts)
	}
	b, src := &archive.Bundle{}, archive.V1Source{}
	for _, ref := range images {
		var err error
		if oref, ok := parseOCIRef(ref); ok {
			err = addOCIImage(b, src, oref, opts)
		} else {
			err = addRegistryImage(ctx, b, src, ref, opts)
		}
		if err != nil {
			return nil, err
		}
	}
	var total int64
	for _, blob := range b.Reachable() {
		total += blob.Size
	}
	p := &progress{total: total, report: opts.Progress}
	return &Images{Bundle: b, src: progressSource{src, p}, close: func() error { return nil }}, nil
}

// classify checks the references and says whether they name docker daemon images.
func classify(images []string, opts SaveOptions) (refs []string, fromDocker bool, err error) {
	if len(images) == 0 {
		return nil, false, errors.New("no images to save")
	}
	var others bool
	for _, ref := range images {
		if _, ok := parseOCIRef(ref); ok {
			others = true
			continue
		}
		if _, err := name.ParseReference(ref, nameOptions(opts.Insecure)...); err != nil {
			return nil, false, fmt.Errorf("%w: image %q: %w", ErrInvalidReference, ref, err)
		}
		if opts.From == FromRegistry {
			others = true
		} else {
			refs = append(refs, ref)
		}
	}
	if len(refs) > 0 && others {
		return nil, false, errors.New("a bundle comes from one source: save docker images and oci:/registry images separately")
	}
	return refs, len(refs) > 0, nil
}

// openDocker streams one `docker save` of all images into a spool.
func openDocker(ctx context.Context, refs []string, opts SaveOptions) (*Images, error) {
	spool, err := archive.NewSpool(opts.TempDir, opts.Write)
	if err != nil {
		return nil, err
	}
	b, err := readDocker(ctx, refs, opts, spool)
	if err != nil {
		return nil, err
	}
	return &Images{Bundle: b, src: spool, close: spool.Close}, nil
}

// readDocker reads one `docker save` of refs into sink.
func readDocker(ctx context.Context, refs []string, opts SaveOptions, sink archive.Sink) (*archive.Bundle, error) {
	stream, p, err := saveStream(ctx, refs, opts)
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	defer stream.Close()
	b, err := archive.Read(ctx, p.reader(stream), sink, archive.ReadOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading docker save stream: %w", err)
	}
	return b, nil
}

// saveStream starts one `docker save` of refs, with progress against the images' sizes.
func saveStream(ctx context.Context, refs []string, opts SaveOptions) (io.ReadCloser, *progress, error) {
	client, err := dockerClient(opts.Docker)
	if err != nil {
		return nil, nil, err
	}
	var total int64
	for _, ref := range refs {
		img, err := client.Inspect(ctx, ref)
		if err != nil {
			return nil, nil, err
		}
		total += img.Size
	}
	stream, err := client.Save(ctx, refs)
	if err != nil {
		return nil, nil, err
	}
	return stream, &progress{total: total, report: opts.Progress}, nil
}

func dockerClient(c *docker.Client) (*docker.Client, error) {
	if c != nil {
		return c, nil
	}
	return docker.New("")
}

// progress counts bytes read through its readers and reports them.
type progress struct {
	done, total int64
	report      func(done, total int64)
}

func (p *progress) reader(r io.Reader) io.Reader {
	if p.report == nil {
		return r
	}
	return &progressReader{r, p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.done += int64(n)
	r.p.report(r.p.done, r.p.total)
	return n, err
}

// progressSource reports the bytes of the blobs it serves as they are read.
type progressSource struct {
	archive.BlobSource
	p *progress
}

func (s progressSource) Open(ctx context.Context, b *archive.Blob) (io.ReadCloser, error) {
	rc, err := s.BlobSource.Open(ctx, b)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{s.p.reader(rc), rc}, nil
}

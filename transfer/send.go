package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sync/errgroup"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store/docker"
)

// SendOptions say where Send reads images, how it reaches the hosts, and how the images
// travel.
type SendOptions struct {
	// Source reads the images as it does for Save: From, Insecure and Platform say where
	// from, Write how the bundle travels, Progress how reading goes. Have is not used:
	// each host says what it has.
	Source SaveOptions
	// FromHost, if set, is the SSH destination of the docker daemon the images come from,
	// instead of the local one.
	FromHost string
	// All adds every tagged image of the source docker daemon to the images named.
	All bool
	// To is the kind of store every host loads into: "docker" (or ""), "podman", or
	// "oci:DIR" for an OCI image layout directory DIR on the host, written over SFTP (a
	// relative DIR starts at the remote user's home directory).
	To string
	// SSH says how to reach the hosts and FromHost.
	SSH sshconn.Config
	// Adapt, when Source.Write compresses, compresses the stream to hosts that take it as
	// it is read only while compressing is faster than not: on a link faster than the
	// compression, its gzip members go stored (see autoGzip).
	Adapt bool
	// Progress, if set, is told for each host how many bytes were sent to it so far and an
	// estimate of how many it needs in all. It is called from many goroutines.
	Progress func(host string, sent, total int64)
}

// A HostResult says how sending to one host went.
type HostResult struct {
	Host  string // as given to Send
	Store string // "docker", "podman" or "oci:DIR"
	// Sent is the bytes streamed into the host's store: its docker or podman load, or the
	// blobs written to its OCI layout. Full estimates what sending the images whole would
	// have cost.
	Sent, Full int64
	// Layers counts the layer blobs of the images, Skipped those the host already had.
	Layers, Skipped int
	// Complete is true when the host's store takes only complete images (docker on the
	// containerd image store, podman): nothing was skipped.
	Complete bool
	// Loaded are the references the host's store reports it loaded (for an OCI layout,
	// those its index.json now names).
	Loaded []string
	Err    error
}

// A SendError says which hosts did not get the images; the others did.
type SendError struct {
	Failed []HostResult
	Hosts  int // how many hosts there were
}

func (e *SendError) Error() string {
	var msgs []string
	for _, r := range e.Failed {
		msgs = append(msgs, r.Host+": "+r.Err.Error())
	}
	return fmt.Sprintf("%d of %d hosts failed: %s", len(e.Failed), e.Hosts, strings.Join(msgs, "; "))
}

func (e *SendError) Unwrap() []error {
	var errs []error
	for _, r := range e.Failed {
		errs = append(errs, r.Err)
	}
	return errs
}

// maxParallelHosts caps the hosts sent to at once.
const maxParallelHosts = 16

// Send reads images from their source once and loads them into the store opts.To names on
// every host over SSH, concurrently. A docker host gets only the layers it lacks (all of
// them if it keeps images in the containerd image store), an OCI layout only the blobs it
// lacks, podman complete images. Hosts connect and take stock while the source is read. A
// host that fails does not stop the others: the results say how each went, and the error
// is a *SendError naming those that failed. Images, hosts and the store are checked before
// anything is dialed. docker and podman load nothing from a stream cut short, so a failed
// host is as it was; an OCI layout keeps the blobs written whole, but index.json names the
// images only once all are there. Either way, sending again finishes the job.
func Send(ctx context.Context, images, hosts []string, opts SendOptions) ([]HostResult, error) {
	dests, err := parseHosts(hosts)
	if err != nil {
		return nil, err
	}
	if err := checkSendImages(images, opts); err != nil {
		return nil, err
	}
	to, err := parseSendTarget(opts.To, dests)
	if err != nil {
		return nil, err
	}
	var from *sshconn.Destination
	if opts.FromHost != "" {
		d, err := parseHosts([]string{opts.FromHost})
		if err != nil {
			return nil, err
		}
		from = &d[0]
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	src := &pending{ready: make(chan struct{})}
	if to.kind == "docker" {
		src.plan = newColdPlan(len(dests), opts.Adapt)
	}
	go func() {
		defer close(src.ready)
		if src.im, src.err = openSendSource(ctx, images, from, opts, src.plan); src.err != nil {
			cancel(src.err)
		}
	}()

	results := make([]HostResult, len(dests))
	var g errgroup.Group
	g.SetLimit(maxParallelHosts)
	for i, d := range dests {
		g.Go(func() error {
			results[i] = sendHost(ctx, hosts[i], d, to, src, opts)
			return nil
		})
	}
	g.Wait()
	<-src.ready
	if src.err != nil {
		return nil, src.err
	}
	src.im.Close()

	e := &SendError{Hosts: len(results)}
	for _, r := range results {
		if r.Err != nil {
			e.Failed = append(e.Failed, r)
		}
	}
	if len(e.Failed) > 0 {
		return results, e
	}
	return results, nil
}

// parseHosts parses SSH destinations.
func parseHosts(hosts []string) ([]sshconn.Destination, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no hosts to send to")
	}
	var dests []sshconn.Destination
	for _, h := range hosts {
		d, err := sshconn.ParseDestination(h)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
		}
		dests = append(dests, d)
	}
	return dests, nil
}

// checkSendImages checks image references, and that All has a docker daemon to list.
func checkSendImages(images []string, opts SendOptions) error {
	if opts.All && opts.Source.From == FromRegistry {
		return errors.New("sending all images needs a docker daemon as the source, not a registry")
	}
	if len(images) == 0 && !opts.All {
		return errors.New("no images to send")
	}
	for _, ref := range images {
		if _, ok := parseOCIRef(ref); ok {
			continue
		}
		if _, err := name.ParseReference(ref, nameOptions(opts.Source.Insecure)...); err != nil {
			return fmt.Errorf("%w: image %q: %w", ErrInvalidReference, ref, err)
		}
	}
	return nil
}

// A sendTarget is the kind of store the hosts load into.
type sendTarget struct {
	kind string // "docker", "podman" or "oci"
	dir  string // for "oci", the layout directory on the host
}

// parseSendTarget parses SendOptions.To and checks it fits the destinations: only docker
// takes a socket path.
func parseSendTarget(to string, dests []sshconn.Destination) (sendTarget, error) {
	var t sendTarget
	switch dir, isOCI := strings.CutPrefix(to, "oci:"); {
	case to == "" || to == "docker":
		return sendTarget{kind: "docker"}, nil
	case to == "podman":
		t = sendTarget{kind: "podman"}
	case isOCI && dir != "" && !strings.ContainsFunc(dir, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		t = sendTarget{kind: "oci", dir: dir}
	case isOCI:
		return t, fmt.Errorf("%w: store %q: name the layout directory on the hosts, oci:DIR", ErrInvalidReference, to)
	default:
		return t, fmt.Errorf("%w: store %q: use docker, podman or oci:DIR", ErrInvalidReference, to)
	}
	for _, d := range dests {
		if d.Path != "" {
			return t, fmt.Errorf("%w: host %s: a socket path goes with docker hosts only, not with %s", ErrInvalidReference, d, to)
		}
	}
	return t, nil
}

// pending is the source being read: im or err once ready is closed.
type pending struct {
	ready chan struct{}
	im    *Images
	err   error
	plan  *coldPlan // for docker hosts: which take the source as it is read
}

func (p *pending) wait(ctx context.Context) (*Images, error) {
	select {
	case <-p.ready:
		return p.im, p.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// openSendSource reads the images once: from the docker daemon of from over SSH if it is
// set, else as opts.Source says. Images from a docker daemon are forwarded as they are read
// to the hosts plan finds cold (see openDockerPipelined).
func openSendSource(ctx context.Context, images []string, from *sshconn.Destination, opts SendOptions, plan *coldPlan) (_ *Images, err error) {
	if plan != nil {
		defer func() {
			select {
			case <-plan.known:
			default:
				plan.publish(nil, 0) // not pipelined
			}
		}()
	}
	save := opts.Source
	if from != nil {
		r, err := dialDocker(ctx, *from, opts.SSH)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", from, err)
		}
		defer r.Close()
		save.Docker = r.docker
	}
	if opts.All {
		client, err := dockerClient(save.Docker)
		if err != nil {
			return nil, err
		}
		tags, err := taggedImages(ctx, client)
		if err != nil {
			return nil, err
		}
		for _, tag := range tags {
			if !slices.Contains(images, tag) {
				images = append(images, tag)
			}
		}
	}
	if refs, fromDocker, err := classify(images, save); err == nil && fromDocker && plan != nil {
		return openDockerPipelined(ctx, refs, save, plan)
	}
	return Open(ctx, images, save)
}

// taggedImages lists the tags of every image a docker daemon holds, sorted.
func taggedImages(ctx context.Context, client *docker.Client) ([]string, error) {
	images, err := client.Images(ctx)
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
		return nil, errors.New("the source docker daemon has no tagged images")
	}
	slices.Sort(tags)
	return tags, nil
}

// sendHost sends to one host's store.
func sendHost(ctx context.Context, host string, d sshconn.Destination, to sendTarget, src *pending, opts SendOptions) HostResult {
	if to.kind == "docker" {
		res := sendDocker(ctx, host, d, src, opts)
		res.Store = "docker"
		return res
	}
	res := HostResult{Host: host, Store: to.kind}
	progress := func(sent, total int64) {
		if opts.Progress != nil {
			opts.Progress(host, sent, max(sent, total))
		}
	}
	c, err := sshconn.Dial(ctx, d, opts.SSH)
	if err != nil {
		res.Err = err
		return res
	}
	defer c.Close()
	if to.kind == "podman" {
		res.Err = sendPodman(ctx, &res, c, src, progress)
	} else {
		res.Store = "oci:" + to.dir
		res.Err = sendOCI(ctx, &res, c, to.dir, src, progress)
	}
	if res.Err == nil {
		progress(res.Sent, res.Sent)
	}
	return res
}

// sendDocker connects to one host, takes stock of its daemon, and streams it what it lacks:
// as the source is read if it lacks everything, else once it is read.
func sendDocker(ctx context.Context, host string, d sshconn.Destination, src *pending, opts SendOptions) HostResult {
	res := HostResult{Host: host}
	decided := false
	defer func() {
		if !decided && src.plan != nil {
			src.plan.decide(nil, false) // failed
		}
	}()
	r, err := dialDocker(ctx, d, opts.SSH)
	if err != nil {
		res.Err = err
		return res
	}
	defer r.Close()
	info, err := r.docker.Info(ctx)
	if err != nil {
		res.Err = err
		return res
	}
	res.Complete = info.ContainerdSnapshotter
	has := func(*archive.Image, int) bool { return false }
	if !res.Complete {
		inv, err := DockerInventory(ctx, r.docker)
		if err != nil {
			res.Err = err
			return res
		}
		has = inv.Has
	}
	if src.plan != nil {
		images, ok := src.plan.layers(ctx, src)
		cold := ok && (res.Complete || holdsNone(has, images))
		decided = true
		if cold {
			h, pr := newColdHost(func(sent int64) {
				if opts.Progress != nil {
					opts.Progress(host, sent, max(sent, src.plan.total))
				}
			})
			if src.plan.decide(h, false) {
				return sendCold(ctx, res, h, pr, r.docker, src, opts)
			}
		} else {
			src.plan.decide(nil, true)
		}
	}
	im, err := src.wait(ctx)
	if err != nil {
		res.Err = err
		return res
	}
	b := im.Bundle.Thin(has)
	res.Layers, res.Skipped = countLayers(b)
	res.Full = im.wireSize(im.Bundle, opts.Source.Write)
	total := im.wireSize(b, opts.Source.Write)
	progress := func(sent int64) {
		if opts.Progress != nil {
			opts.Progress(host, sent, max(sent, total))
		}
	}
	progress(0)
	res.Loaded, res.Sent, res.Err = loadStream(ctx, r.docker, im, b, opts.Source.Write, progress)
	if res.Err == nil && opts.Progress != nil {
		opts.Progress(host, res.Sent, res.Sent) // loaded: the estimate is done with
	}
	return res
}

// sendCold loads the stream h gets as the source is read.
func sendCold(ctx context.Context, res HostResult, h *coldHost, pr *io.PipeReader, client *docker.Client, src *pending,
	opts SendOptions) HostResult {
	if opts.Progress != nil {
		opts.Progress(res.Host, 0, src.plan.total)
	}
	h.load(ctx, client, pr)
	res.Loaded, res.Err = h.result()
	res.Sent = h.out.n.Load()
	if im, err := src.wait(ctx); err == nil {
		res.Layers, _ = countLayers(im.Bundle)
		res.Full = max(res.Sent, im.wireSize(im.Bundle, opts.Source.Write))
		if res.Err == nil {
			res.Full = res.Sent // it was sent whole
		}
	} else if res.Err == nil {
		res.Err = err
	}
	if res.Err == nil && opts.Progress != nil {
		opts.Progress(res.Host, res.Sent, res.Sent)
	}
	return res
}

// loadStream writes b into the daemon's load as it is read and returns what the daemon
// loaded and how many bytes were sent.
func loadStream(ctx context.Context, client *docker.Client, im *Images, b *archive.Bundle, opts archive.WriteOptions,
	progress func(int64)) ([]string, int64, error) {
	pr, pw := io.Pipe()
	w := &countingWriter{w: pw, report: progress}
	wrote := make(chan error, 1)
	go func() {
		err := im.Write(ctx, w, b, opts)
		pw.CloseWithError(err)
		wrote <- err
	}()
	loaded, err := client.Load(ctx, pr, nil)
	pr.CloseWithError(errors.New("docker load returned")) // stops the writer if load gave up early
	if werr := <-wrote; err != nil && werr != nil {
		err = fmt.Errorf("%w; the stream stopped after %d bytes, and docker loads nothing from an incomplete stream: the host is as it was", err, w.n.Load())
	}
	return loaded, w.n.Load(), err
}

// countingWriter counts the bytes written through it and reports the count.
type countingWriter struct {
	w      io.Writer
	n      atomic.Int64
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.report(c.n.Add(int64(n)))
	return n, err
}

// countLayers counts the layer blobs of b's images and those b leaves out.
func countLayers(b *archive.Bundle) (layers, missing int) {
	seen := map[*archive.Blob]bool{}
	for _, img := range b.Images {
		for _, l := range img.Layers {
			if !seen[l.Blob] {
				seen[l.Blob] = true
				layers++
				if l.Missing {
					missing++
				}
			}
		}
	}
	return layers, missing
}

// encodedSizer is a blob source that knows how many bytes a blob takes once encoded for a
// bundle (archive.Spool).
type encodedSizer interface {
	EncodedSize(b *archive.Blob, opts archive.WriteOptions) (int64, bool)
}

// wireSize estimates the bytes of b written with opts: for each blob it carries, a tar
// header and its body as the source holds it encoded, else its size.
func (im *Images) wireSize(b *archive.Bundle, opts archive.WriteOptions) int64 {
	sizer, _ := im.src.(encodedSizer)
	var n int64
	for _, blob := range b.Reachable() {
		if !blob.Present() {
			continue
		}
		size, ok := int64(0), false
		if sizer != nil {
			size, ok = sizer.EncodedSize(blob, opts)
		}
		if !ok {
			size = blob.Size
		}
		n += 512 + size
	}
	return n
}

// A remoteDocker is a docker daemon reached over SSH.
type remoteDocker struct {
	ssh    *sshconn.Client
	docker *docker.Client
}

// dialDocker connects to d over SSH; the docker client then reaches the daemon's socket,
// d.Path or the default one, through that connection.
func dialDocker(ctx context.Context, d sshconn.Destination, cfg sshconn.Config) (*remoteDocker, error) {
	c, err := sshconn.Dial(ctx, d, cfg)
	if err != nil {
		return nil, err
	}
	socket := cmp.Or(d.Path, strings.TrimPrefix(docker.DefaultHost, "unix://"))
	client := docker.NewWithDialer(func(ctx context.Context) (net.Conn, error) {
		conn, err := c.DialUnix(ctx, socket)
		switch {
		case errors.Is(err, sshconn.ErrNoSocket):
			err = fmt.Errorf("%w: is docker installed and running there? If its socket is elsewhere, name it: ssh://%s/PATH/docker.sock",
				err, sshconn.Destination{User: d.User, Host: d.Host, Port: d.Port})
		case errors.Is(err, sshconn.ErrSocketDenied):
			err = fmt.Errorf("%w: add the user to the docker group there, or connect as a user who may use docker", err)
		case errors.Is(err, sshconn.ErrSocketRefused):
			err = fmt.Errorf("%w: is the docker daemon running there?", err)
		}
		return conn, err
	})
	return &remoteDocker{ssh: c, docker: client}, nil
}

func (r *remoteDocker) Close() error { return r.ssh.Close() }

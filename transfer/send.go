package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/docker"
)

// SendOptions say where Send reads images, how it reaches the hosts, and how the images
// travel.
type SendOptions struct {
	Options
	// From is the store image arguments are read from ("docker" when ""), FromHost the SSH
	// destination it is on, if not this machine. Bundle files, oci:DIR[:REF] and
	// pool:DIR[:NAME] arguments name their own place.
	From, FromHost string
	// Store, if set, is the store image arguments are read from, instead of From.
	Store store.Store
	// All adds every tagged image of the source docker daemon to the images named.
	All bool
	// To is the store every host loads into ("docker" when ""): docker, podman, oci:DIR (a
	// relative DIR starts at the remote user's home directory) or any kind that can be on a
	// host.
	To string
	// Read says how images are read; Read.Write how the stream to docker hosts travels: at
	// Read.Write.Level, or, when it is 0, at the level each host's link calls for
	// (archive.Adaptive).
	Read store.ReadOptions
	// Adapt, when Read.Write compresses, sends zstd to the hosts that take it, and gzip
	// stored while compressing is slower than not.
	Adapt bool
	// Progress, if set, is told for each host how many bytes were sent to it so far and an
	// estimate of how many it needs in all. It is called from many goroutines.
	Progress func(host string, sent, total int64)
}

// A HostResult says how sending to one host went.
type HostResult struct {
	Host  string // as given to Send
	Store string // the store on the host, as the grammar names it
	// Sent is the bytes streamed into the host's store. Full estimates what sending the
	// images whole would have cost.
	Sent, Full int64
	// Layers counts the layer blobs of the images, Skipped those the host already had.
	Layers, Skipped int
	// Complete is true when the host's store takes only complete images (docker on the
	// containerd image store, podman): nothing was skipped.
	Complete bool
	// Loaded are the references the host's store reports it loaded.
	Loaded []string
	// Codec is how the stream to a docker host was compressed.
	Codec archive.Codec
	Err   error
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

// Send reads the images of args once (see Sources; several sources go one after another,
// a base bundle before its delta, say) and loads them into the store opts.To names on every
// host over SSH, concurrently, each host getting only what its store lacks and can complete.
// Hosts connect and take stock while the source is read. A host that fails does not stop the
// others: the results say how each went, and the error is a *SendError naming those that
// failed. Arguments, hosts and the store are checked before anything is dialed.
func Send(ctx context.Context, args, hosts []string, opts SendOptions) ([]HostResult, error) {
	to := cmp.Or(opts.To, "docker")
	dests, err := parseHosts(hosts, to)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 && !opts.All {
		return nil, errors.New("no images to send")
	}
	var sources []Source
	if len(args) > 0 {
		if sources, err = Sources(args, opts.From, opts.FromHost); err != nil {
			return nil, err
		}
	}
	if opts.All {
		if sources, err = addAll(sources, opts); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	reads := make([]*pending, len(sources))
	for i := range reads {
		reads[i] = &pending{ready: make(chan struct{}), pack: newPacker(ctx, opts.Read.TempDir)}
	}
	reads[0].plan = newColdPlan(len(dests), opts.Adapt)
	go func() {
		for i, src := range sources {
			p := reads[i]
			p.im, p.err = openSendSource(ctx, src, opts, p.plan, &p.codec)
			close(p.ready)
			if p.err != nil {
				cancel(p.err)
				for _, rest := range reads[i+1:] {
					rest.err = p.err
					close(rest.ready)
				}
				return
			}
		}
	}()

	results := make([]HostResult, len(dests))
	var g errgroup.Group
	g.SetLimit(maxParallelHosts)
	for i, d := range dests {
		g.Go(func() error {
			results[i] = sendHost(ctx, hosts[i], d, to, reads, opts)
			return nil
		})
	}
	g.Wait()
	for _, p := range reads {
		<-p.ready
		p.pack.Close()
		if p.err != nil {
			return nil, p.err
		}
		p.im.Close()
	}
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

// parseHosts parses SSH destinations, and checks that the store to can be on a host and
// takes the socket paths given.
func parseHosts(hosts []string, to string) ([]sshconn.Destination, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no hosts to send to")
	}
	k, _, err := store.Parse(to)
	if err != nil {
		return nil, err
	}
	if !k.Remote {
		return nil, fmt.Errorf("%w: %s is reached from this machine, not on a host: use ferry load", ErrInvalidReference, k.Syntax)
	}
	var dests []sshconn.Destination
	for _, h := range hosts {
		d, err := sshconn.ParseDestination(h)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
		}
		if d.Path != "" && k.Name != "docker" && k.Name != "containerd" {
			return nil, fmt.Errorf("%w: host %s: a socket path goes with docker or containerd hosts, not with %s", ErrInvalidReference, d, to)
		}
		dests = append(dests, d)
	}
	return dests, nil
}

// addAll adds every tagged image of the source docker daemon to the sources.
func addAll(sources []Source, opts SendOptions) ([]Source, error) {
	from := cmp.Or(opts.From, "docker")
	if from != "docker" {
		return nil, fmt.Errorf("sending all images needs a docker daemon as the source, not %s", from)
	}
	i := slices.IndexFunc(sources, func(s Source) bool { return s.Store == from && s.Host == opts.FromHost })
	if i < 0 {
		sources = append(sources, Source{Store: from, Host: opts.FromHost})
		i = len(sources) - 1
	}
	sources[i].Refs = append(sources[i].Refs, allTags)
	return sources, nil
}

// allTags stands for every tagged image of a docker source, listed once it is open.
const allTags = "\x00all"

// pending is a source being read: im or err once ready is closed.
type pending struct {
	ready chan struct{}
	im    *store.Images
	err   error
	plan  *coldPlan     // which docker hosts take the source as it is read
	codec archive.Codec // how the stream to the cold hosts is compressed
	pack  *packer       // its layers compressed for the hosts that unpack them
}

// done reports whether the source was read whole (p.im is set).
func (p *pending) done() bool {
	select {
	case <-p.ready:
		return p.err == nil
	default:
		return false
	}
}

func (p *pending) wait(ctx context.Context) (*store.Images, error) {
	select {
	case <-p.ready:
		return p.im, p.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// layers returns where the source's layers are: as its read spools them when it does (a
// pipelined docker save: they are all there), else in the images, once read (im).
func (p *pending) layers(ctx context.Context) (ls *layerSource, im *store.Images, err error) {
	if p.plan != nil {
		select {
		case <-p.plan.spooling:
			if p.plan.early != nil {
				return p.plan.early, nil, nil
			}
		case <-p.ready:
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
	}
	if im, err = p.wait(ctx); err != nil {
		return nil, nil, err
	}
	return bundleLayers(im), im, nil
}

// openSendSource reads one source once. A docker daemon's images are forwarded as they are
// read to the hosts plan finds cold (see openPipelined).
func openSendSource(ctx context.Context, src Source, opts SendOptions, plan *coldPlan, codec *archive.Codec) (_ *store.Images, err error) {
	if plan != nil {
		defer func() {
			select {
			case <-plan.known:
			default:
				plan.publish(nil, 0) // not pipelined
			}
			plan.spool(nil) // if it was not
		}()
	}
	src, st, done, err := src.open(ctx, opts.Store, opts.Options)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src, err)
	}
	defer done()
	if i := slices.Index(src.Refs, allTags); i >= 0 {
		d, ok := st.(*docker.Store)
		if !ok {
			return nil, fmt.Errorf("sending all images needs a docker daemon as the source, not %s", st)
		}
		tags, err := d.Tagged(ctx)
		if err != nil {
			return nil, err
		}
		src.Refs = slices.Delete(src.Refs, i, i+1)
		for _, tag := range tags {
			if !slices.Contains(src.Refs, tag) {
				src.Refs = append(src.Refs, tag)
			}
		}
	}
	if d, ok := st.(*docker.Store); ok && plan != nil {
		return openPipelined(ctx, d, src.Refs, opts.Read, plan, codec)
	}
	return src.Open(ctx, st, opts.Read)
}

// sendHost connects to one host, opens its store, takes stock, and sends it each source in
// turn.
func sendHost(ctx context.Context, host string, d sshconn.Destination, to string, reads []*pending, opts SendOptions) HostResult {
	res := HostResult{Host: host, Store: to}
	plan := reads[0].plan
	decided := false
	defer func() {
		if !decided {
			plan.decide(nil, false) // failed
		}
	}()
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
	env := opts.env(c, d.Path)
	if opts.Waiting != nil {
		env.Waiting = func(msg string) { opts.Waiting(host + ": " + msg) }
	}
	st, err := store.Open(ctx, to, env)
	if err != nil {
		res.Err = err
		return res
	}
	defer st.Close()
	inv, err := st.Inventory(ctx)
	if err != nil {
		res.Err = err
		return res
	}
	var note func(string)
	if opts.Note != nil {
		note = func(msg string) { opts.Note(host + ": " + msg) }
	}
	if b, binv := behind(ctx, st, inv, note); b != nil {
		defer b.Close()
		st, inv = b, binv
	}
	res.Store = st.String()
	res.Complete = inv.Complete
	zstdOK := takesZstd(ctx, st) // asked once per host
	if _, ok := st.(store.Streamer); ok && opts.Read.Write.Codec == archive.Zstd && !zstdOK {
		res.Err = fmt.Errorf("%s does not load zstd-compressed input (docker 23 and later do): send with --compress auto or gzip", st)
		return res
	}
	for i, p := range reads {
		if i == 0 {
			decided = true
			if h := p.plan.join(ctx, p, st, inv, zstdOK, progress); h != nil {
				res.Err = sendCold(ctx, &res, h, p, opts.Read.Write)
				if res.Err != nil {
					return res
				}
				continue
			}
		}
		var err error
		if d, ok := st.(*docker.Store); ok && !inv.Complete {
			err = sendStepped(ctx, &res, d, inv, zstdOK, p, opts, progress)
		} else {
			var im *store.Images
			if im, err = p.wait(ctx); err == nil {
				err = deliver(ctx, &res, st, inv, nil, zstdOK, im, p.pack, opts, progress)
			}
		}
		if err != nil {
			res.Err = err
			return res
		}
		if i+1 < len(reads) { // the next source may build on what this one loaded
			if inv, err = st.Inventory(ctx); err != nil {
				res.Err = err
				return res
			}
		}
	}
	progress(res.Sent, res.Sent) // loaded: the estimate is done with
	return res
}

// behind returns the store behind st (store.Fronted) and its inventory, when st takes
// complete images only and the store behind it takes more (docker on the containerd image
// store: its containerd, thin and resumable). When there is one that cannot be used, st
// takes complete images, and note is told why.
func behind(ctx context.Context, st store.Store, inv *dedupe.Inventory, note func(string)) (store.Store, *dedupe.Inventory) {
	f, ok := st.(store.Fronted)
	if !ok || !inv.Complete {
		return nil, nil
	}
	b, err := f.Behind(ctx)
	var binv *dedupe.Inventory
	if err == nil && b != nil {
		if binv, err = b.Inventory(ctx); err != nil {
			b.Close()
		}
	}
	if err != nil {
		if note != nil {
			note(err.Error() + ": sending complete images instead")
		}
		return nil, nil
	}
	return b, binv
}

// deliver sends a store what it lacks of im, by inv: to a docker daemon, a bundle streamed
// into its load, compressed as opts say (after steps, if not nil: last in their chain,
// leaving out the layers they loaded); to another store, the blobs it lacks through its
// Receive, its uncompressed layers compressed by pk (if not nil) when it unpacks them
// (deliverPacked).
func deliver(ctx context.Context, res *HostResult, st store.Store, inv *dedupe.Inventory, steps *stepped, zstdOK bool, im *store.Images,
	pk *packer, opts SendOptions, progress func(sent, total int64)) error {
	if inv.Complete && inv.HoldsAll(im.Bundle) {
		// A store that takes complete images only holds these whole, tagged alike.
		layers, _ := countLayers(im.Bundle)
		res.Layers += layers
		res.Skipped += layers
		res.Full += wireSize(im, im.Bundle, opts.Read.Write, false)
		return nil
	}
	b := inv.Thin(im.Bundle)
	if err := completes(st, inv, b); err != nil {
		return err
	}
	layers, skipped := countLayers(b)
	res.Layers += layers
	res.Skipped += skipped
	if s, ok := st.(store.Streamer); ok {
		var chain *loadChain
		var write archive.WriteOptions
		if steps != nil { // the steps' chain reports the bytes, and their compression goes on
			b, chain, write = b.Thin(steps.layers.Has), steps.chain, steps.write
		} else {
			write = wire(opts.Read.Write, opts.Adapt, zstdOK)
		}
		res.Codec = write.Codec
		res.Full += wireSize(im, im.Bundle, write, false)
		if steps == nil {
			sent := res.Sent
			total := sent + wireSize(im, b, write, true)
			chain = &loadChain{s: s, sent: func(n int64) { res.Sent = sent + n; progress(res.Sent, total) }}
		}
		l, _ := chain.load(ctx, b, im.Src, write)
		loaded, err := l.wait()
		res.Loaded = append(res.Loaded, loaded...)
		switch {
		case err != nil && steps != nil:
			err = fmt.Errorf("%w; %s", err, resumeHint)
		case l.cut:
			err = fmt.Errorf("%w; the stream stopped after %d bytes, and docker loads nothing from an incomplete stream: the host is as it was", err, l.n)
		}
		return err
	}
	sent := res.Sent
	count := func(n int64) { res.Sent = sent + n }
	if u, ok := st.(store.Unpacker); ok && pk != nil && len(uncompressed(b)) > 0 {
		return deliverPacked(ctx, res, st, u, inv, b, pk, im, progress)
	}
	for _, blob := range b.Reachable() {
		res.Full += blob.Size
	}
	b = b.LeaveOut(func(blob *archive.Blob) bool { return inv.HasBlob(blob.Digest) })
	total := sent
	for _, blob := range b.Reachable() {
		if blob.Present() {
			total += blob.Size
		}
	}
	rcv, err := st.Receive(ctx)
	if err != nil {
		return err
	}
	sink := &countingSink{Receiver: rcv, p: store.Progress{Report: func(n, _ int64) { count(n); progress(res.Sent, total) }}}
	err = archive.Feed(ctx, b, im.Src, sink)
	if r, ok := rcv.(store.Resumer); ok { // what the store held of a blob was never sent
		count(sink.p.Done - r.Resumed())
	}
	if err != nil {
		return fmt.Errorf("%w; what %s took in whole stays there, and sending again sends only the rest", err, st)
	}
	for _, l := range rcv.Loaded() {
		res.Loaded = append(res.Loaded, l.Ref)
	}
	return nil
}

// completes checks that the store holds every layer b leaves out.
func completes(st store.Store, inv *dedupe.Inventory, b *archive.Bundle) error {
	if lacking := inv.Lacks(b); len(lacking) > 0 {
		return fmt.Errorf("%w: the images leave out %d layers %s does not have (diffIDs %s): send the bundle they come from first",
			archive.ErrMissingBlob, len(lacking), st, strings.Join(lacking, ", "))
	}
	return nil
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

// countingSink counts the bytes of the entries it hands on.
type countingSink struct {
	store.Receiver
	p store.Progress
}

func (c *countingSink) Entry(ctx context.Context, e archive.Entry, r io.Reader) error {
	return c.Receiver.Entry(ctx, e, c.p.Reader(r))
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
// bundle (archive.Spool), and, for the others, how the blobs encoded so far shrank.
type encodedSizer interface {
	EncodedSize(b *archive.Blob, opts archive.WriteOptions) (int64, bool)
	EncodedRatio(opts archive.WriteOptions) (float64, bool)
}

// wireSize estimates the bytes of b written with opts: for each blob it carries, a tar
// header and its body as the source holds it encoded, else its size; with guess, the size
// at the ratio the source's blobs were encoded at so far, if they were (a progress
// estimate).
func wireSize(im *store.Images, b *archive.Bundle, opts archive.WriteOptions, guess bool) int64 {
	sizer, _ := im.Src.(encodedSizer)
	ratio, guessed := 1.0, false
	if sizer != nil && guess {
		if r, ok := sizer.EncodedRatio(opts); ok {
			ratio, guessed = r, true
		}
	}
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
			if guessed {
				size = int64(float64(size) * ratio)
			}
		}
		n += 512 + size
	}
	return n
}

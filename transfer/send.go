package transfer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
)

// SendOptions say where Send reads images, how it reaches the hosts, and how the images
// travel.
type SendOptions struct {
	Options
	// From is the store image arguments are read from (the default store when ""),
	// FromHost the SSH destination it is on, if not this machine. Bundle files and
	// references that name their own place (oci:DIR[:REF], pool:DIR[:NAME]) are sources of
	// their own.
	From, FromHost string
	// Store, if set, is the store image arguments are read from, instead of From.
	Store store.Store
	// All adds every tagged image of the source store (a store.Tagger) to the images named.
	All bool
	// To is the store every host loads into (the default store when ""): any kind that can
	// be on a host (an oci:DIR there starts at the remote user's home directory when
	// relative).
	To string
	// Open, if set, opens the store on a host in place of dialing it over SSH and opening
	// To there.
	Open func(ctx context.Context, host string) (store.Store, error)
	// Read says how images are read; Send sets its Write from Compress.
	Read store.ReadOptions
	// Compress is how the streams to the hosts are compressed: each host's stream at the
	// level its link calls for, unless the level is fixed.
	Compress compress.Compression
	// Jobs bounds how many hosts are sent to at once (0: DefaultJobs). The source is read
	// once whatever it is: hosts that wait their turn take the images from the spool.
	Jobs int
	// Helper says whether ferry runs on the hosts to rebuild content deltas there.
	Helper Helper
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
	// Layers counts the layer blobs of the images, Skipped those the host already had, as
	// its inventory said, and Held those it found it had whole as they came (a containerd
	// holding the blob in another namespace): no byte of them moved, and it unpacked them.
	// The others are the layers sent.
	Layers, Skipped, Held int
	// Complete, when the host's store takes only complete images (docker on the containerd
	// image store, podman), says why, in the store kind's words: nothing was skipped.
	Complete string
	// Loaded are the references the host's store reports it loaded.
	Loaded []string
	// Codec is how the stream to a docker host was compressed.
	Codec compress.Codec
	// Content, when the host was sent content deltas through the ferry helper, says what
	// they held; Resumed is the bytes of them a cut send had left on the host already.
	Content *content.Summary
	Resumed int64
	// Helper is the bytes of the helper binary copied to the host, its one-time copy (apart
	// from Sent); Index the bytes of the content index the host's helper sent back.
	Helper, Index int64
	Err           error
}

// ErrNotLoaded: a host's store reported loading images it then does not list.
var ErrNotLoaded = errors.New("images not loaded")

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

// DefaultJobs is how many hosts are sent to at once unless SendOptions.Jobs says.
const DefaultJobs = 16

// Send reads the images of args once (see Sources; several sources go one after another,
// a base bundle before its delta, say) and loads them into the store opts.To names on every
// host over SSH, opts.Jobs at a time, each host getting only what its store lacks and can
// complete. The first hosts connect and take stock while the source is read. A host that fails does not stop the
// others: the results say how each went, and the error is a *SendError naming those that
// failed. Arguments, hosts and the store are checked before anything is dialed.
func Send(ctx context.Context, args, hosts []string, opts SendOptions) ([]HostResult, error) {
	s, err := newSend(args, hosts, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.start(ctx, cancel)
	results := make([]HostResult, len(s.hosts))
	var g errgroup.Group
	g.SetLimit(s.jobs)
	for i, h := range s.hosts {
		g.Go(func() error {
			results[i] = h.run(ctx)
			return nil
		})
	}
	g.Wait()
	if err := s.close(); err != nil {
		return nil, err
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

// A send is one Send: its sources, read once, and its hosts.
type send struct {
	opts    SendOptions
	to      string     // the store on every host
	kind    store.Kind // to's
	sources []Source
	reads   []*pending // the sources' reads, in order
	plan    *coldPlan  // which hosts take the first source as it is read
	hosts   []*host
	jobs    int // hosts sent to at once: the first jobs hosts may take the first source as it is read
}

// newSend checks the arguments, the hosts and the store they load into.
func newSend(args, hosts []string, opts SendOptions) (*send, error) {
	s := &send{opts: opts, to: cmp.Or(opts.To, store.DefaultRef()), jobs: cmp.Or(opts.Jobs, DefaultJobs)}
	if s.jobs < 1 {
		return nil, fmt.Errorf("%w: --jobs %d: send to at least one host at a time", ErrInvalidReference, opts.Jobs)
	}
	s.opts.Read.Write = archive.WriteOptions{Encoder: compress.Encoder{Codec: opts.Compress.Codec, Level: opts.Compress.Level}}
	if len(hosts) == 0 {
		return nil, errors.New("no hosts to send to")
	}
	var err error
	if s.kind, _, err = store.Parse(s.to); err != nil {
		return nil, err
	}
	if !s.kind.Remote {
		return nil, fmt.Errorf("%w: %s is reached from this machine, not on a host: use ferry load", ErrInvalidReference, s.kind.Syntax)
	}
	for _, name := range hosts {
		d, err := sshconn.ParseDestination(name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
		}
		if err := s.kind.OnHost(d.Path); err != nil {
			return nil, fmt.Errorf("host %s: %w", d, err)
		}
		s.hosts = append(s.hosts, &host{s: s, name: name, dest: d, res: HostResult{Host: name, Store: s.to}, planned: len(s.hosts) < s.jobs})
	}
	if len(args) == 0 && !opts.All {
		return nil, errors.New("no images to send")
	}
	if len(args) > 0 {
		if s.sources, err = Sources(args, opts.From, opts.FromHost); err != nil {
			return nil, err
		}
	}
	if opts.All {
		s.addAll()
	}
	return s, nil
}

// addAll adds every tagged image of the --from store to the sources.
func (s *send) addAll() {
	from := cmp.Or(s.opts.From, store.DefaultRef())
	i := slices.IndexFunc(s.sources, func(src Source) bool { return src.Store == from && src.Host == s.opts.FromHost })
	if i < 0 {
		s.sources = append(s.sources, Source{Store: from, Host: s.opts.FromHost})
		i = len(s.sources) - 1
	}
	s.sources[i].Refs = append(s.sources[i].Refs, allTags)
}

// allTags stands for every tagged image of a source, listed once it is open.
const allTags = "\x00all"

// start reads the sources one after another; the first failure cancels the send.
func (s *send) start(ctx context.Context, cancel context.CancelCauseFunc) {
	first := min(len(s.hosts), s.jobs)
	s.plan = newColdPlan(ctx, first, len(s.hosts)-first, s.opts.Compress)
	s.reads = make([]*pending, len(s.sources))
	for i := range s.reads {
		s.reads[i] = &pending{ready: make(chan struct{}), pack: newPacker(ctx, s.opts.Read.TempDir)}
	}
	s.reads[0].plan = s.plan
	go func() {
		for i, src := range s.sources {
			p := s.reads[i]
			p.im, p.err = s.open(ctx, src, p.plan)
			close(p.ready)
			if p.err != nil {
				cancel(p.err)
				for _, rest := range s.reads[i+1:] {
					rest.err = p.err
					close(rest.ready)
				}
				return
			}
		}
	}()
}

// close waits for the reads and releases what they staged.
func (s *send) close() error {
	if s.plan != nil {
		s.plan.ahead.Close()
	}
	var err error
	for _, p := range s.reads {
		<-p.ready
		p.pack.Close()
		if err = cmp.Or(err, p.err); p.err == nil {
			p.im.Close()
		}
	}
	return err
}

// open reads one source once. A Saver's images (docker save) are forwarded as they are
// read to the hosts plan finds cold, if plan is set (see openPipelined).
func (s *send) open(ctx context.Context, src Source, plan *coldPlan) (_ *store.Images, err error) {
	if plan != nil {
		defer plan.unpipelined() // if it was not
	}
	src, st, done, err := src.open(ctx, s.opts.Store, s.opts.Options)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", src, err)
	}
	defer done()
	if i := slices.Index(src.Refs, allTags); i >= 0 {
		t, ok := st.(store.Tagger)
		if !ok {
			return nil, fmt.Errorf("%w: sending all images needs a store that lists its tagged images, not %s", ErrInvalidReference, st)
		}
		tags, err := t.Tagged(ctx)
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
	if sv, ok := st.(store.Saver); ok && plan != nil {
		return plan.read(ctx, sv, src.Refs, s.opts.Read)
	}
	return src.Open(ctx, st, s.opts.Read)
}

// pending is a source being read: im or err once ready is closed.
type pending struct {
	ready chan struct{}
	im    *store.Images
	err   error
	plan  *coldPlan // which hosts take the source as it is read; the first source's only
	pack  *packer   // its layers compressed for the hosts that unpack them
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

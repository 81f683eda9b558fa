package helper

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/leftover"
)

// A Server does on the host what the helper is asked, with the stores there.
type Server interface {
	// Load hands index the content index of the store req names, then rebuilds the content
	// delta delta gives, once it came, from that store, and loads it there; it returns what
	// the store says it loaded. It may read the images of req.Repos while the delta comes.
	Load(ctx context.Context, req Request, index func(*content.Index) error, delta func() (io.Reader, error), note func(string)) (loaded []string, err error)
}

// unused is how long what the helper keeps on a host (another binary, a cut send's delta)
// stays unused before a run removes it.
const unused = 24 * time.Hour

// deltasDir holds, under the helper's cache, the deltas cut sends left, by digest.
const deltasDir = "deltas"

// sha256Hex is a digest as a request names a delta.
var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Serve answers one request on in and out, the helper's standard input and output, with s.
// It refuses a protocol version it does not know, reading nothing more. dir is the helper's
// cache on the host (cut sends' deltas are kept under it), self the directory of the binary
// that runs: other binaries' directories and deltas unused for a day are removed.
func Serve(ctx context.Context, in io.Reader, out io.Writer, dir, self string, s Server) error {
	br := bufio.NewReader(in)
	v, err := readHello(br, 0)
	if err != nil {
		return err
	}
	if v != Version {
		fmt.Fprintf(out, "%srefused: protocol version %d; this helper speaks %d\n", hello, v, Version)
		return fmt.Errorf("%w: %d (this helper speaks %d)", ErrVersion, v, Version)
	}
	if _, err := io.WriteString(out, helloLine(Version)); err != nil {
		return err
	}
	var req Request
	if err := readMsg(br, &req); err != nil {
		return err
	}
	prune(dir, self, time.Now())
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if req.Op != OpLoad {
		return writeMsg(out, Reply{Error: fmt.Sprintf("no operation %q in protocol version %d", req.Op, Version)})
	}
	var notes notes
	rep, err := receive(ctx, br, out, dir, req, s, &notes, cancel)
	if rep != nil {
		rep.Notes = notes.take()
		return errors.Join(err, writeMsg(out, rep))
	}
	return err
}

// gone cancels the request once the near side ends the session: it writes nothing after
// the delta but closes its end when it goes.
func gone(r io.Reader, cancel context.CancelCauseFunc) {
	io.Copy(io.Discard, r)
	cancel(errGone)
}

// errGone: the near side ended the session before the load did.
var errGone = errors.New("the sending side went away")

// notes collects what the stores said, from any goroutine.
type notes struct {
	mu  sync.Mutex
	all []string
}

func (n *notes) add(msg string) {
	n.mu.Lock()
	n.all = append(n.all, msg)
	n.mu.Unlock()
}

// take returns the notes not yet taken.
func (n *notes) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	all := n.all
	n.all = nil
	return all
}

// stageIndex writes x, zstd-compressed, to a file unlinked at once, and returns it rewound
// and its size: the reply that precedes it says its size, and an index may be large.
func stageIndex(x *content.Index) (*os.File, int64, error) {
	f, err := leftover.Unlinked("ferry-index-")
	if err != nil {
		return nil, 0, err
	}
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err == nil {
		err = errors.Join(x.WriteJSON(zw), zw.Close())
	}
	var size int64
	if err == nil {
		size, err = f.Seek(0, io.SeekCurrent)
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// receive sends the store's content index if req asks for it, then takes a content delta
// into dir/deltas/DIGEST, after what a cut send left there, once the near side names it,
// checks it against its digest, and has s load it (s may read the images the delta will
// likely build on meanwhile). It returns the last reply, nil when the near side went before
// the delta came whole (the bytes that came stay, for the next send).
func receive(ctx context.Context, br *bufio.Reader, out io.Writer, dir string, req Request, s Server, notes *notes, cancel context.CancelCauseFunc) (*Reply, error) {
	var (
		f    *os.File
		cut  error  // the near side went before the delta came whole
		last *Reply // why the delta it named cannot be loaded
	)
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	errStop := errors.New("no delta to load")
	// Until the delta is named, the near side writes nothing: its end of input means it went.
	named := make(chan struct{})
	go func() {
		defer close(named)
		if _, err := br.Peek(1); err != nil {
			cancel(errGone)
		}
	}()
	index := func(x *content.Index) error {
		if !req.Index {
			return nil
		}
		staged, size, err := stageIndex(x)
		if err != nil {
			return err
		}
		defer staged.Close()
		if cut = writeMsg(out, Reply{Size: size, Notes: notes.take()}); cut == nil {
			_, cut = io.Copy(out, staged)
		}
		return cut
	}
	delta := func() (io.Reader, error) {
		<-named
		var msg Request
		if cut = readMsg(br, &msg); cut != nil {
			return nil, cut
		}
		req.Digest, req.Size = msg.Digest, msg.Size
		if !sha256Hex.MatchString(req.Digest) || req.Size <= 0 {
			last = &Reply{Error: "a load names its delta by sha256 and size"}
			return nil, errStop
		}
		var have int64
		var err error
		if f, have, err = openDelta(dir, req); err != nil {
			last = &Reply{Error: err.Error()}
			return nil, errStop
		}
		if cut = writeMsg(out, Reply{Offset: have}); cut != nil {
			return nil, cut
		}
		if n, err := io.Copy(f, io.LimitReader(br, req.Size-have)); err != nil || n < req.Size-have {
			cut = fmt.Errorf("the delta stopped after %d of %d bytes (%v): they stay for the next send", have+n, req.Size, err)
			return nil, cut
		}
		go gone(br, cancel)
		if err := checkDigest(f, req.Digest); err != nil {
			os.Remove(f.Name())
			last = &Reply{Error: err.Error(), Rebuild: true}
			return nil, errStop
		}
		return f, nil
	}
	loaded, err := s.Load(ctx, req, index, delta, notes.add)
	switch {
	case cut != nil:
		return nil, cut
	case last != nil:
		return last, nil
	}
	rebuild := errors.Is(err, archive.ErrMissingBlob) || errors.Is(err, archive.ErrDiffIDMismatch) || errors.Is(err, archive.ErrDigestMismatch)
	if f != nil && (err == nil || rebuild) {
		os.Remove(f.Name())
	}
	if err != nil {
		return &Reply{Error: err.Error(), Rebuild: rebuild}, nil
	}
	return &Reply{Loaded: loaded}, nil
}

// openDelta opens the file a delta goes to, locked against another send of the same delta,
// and returns how many of its bytes it holds from a cut send.
func openDelta(dir string, req Request) (*os.File, int64, error) {
	d := filepath.Join(dir, deltasDir)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(filepath.Join(d, req.Digest), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, 0, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("another send is loading the same delta on this host: %w", err)
	}
	have, err := f.Seek(0, io.SeekEnd)
	if err == nil && have > req.Size { // not this delta's: start again
		if err = f.Truncate(0); err == nil {
			have, err = f.Seek(0, io.SeekStart)
		}
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, have, nil
}

// checkDigest checks that f holds what digest names, and rewinds it.
func checkDigest(f *os.File, digest string) error {
	h := sha256.New()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("%w: the delta received hashes to sha256:%s, not sha256:%s", archive.ErrDigestMismatch, got, digest)
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// prune marks self as used, and removes from dir the other binaries' directories and the
// deltas not used for a day. Errors are ignored: what cannot be removed is tried next run.
func prune(dir, self string, now time.Time) {
	selfInfo, err := os.Stat(self)
	if err == nil && sha256Hex.MatchString(filepath.Base(self)) {
		os.Chtimes(self, now, now)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if info, err := os.Stat(p); err != nil || (selfInfo != nil && os.SameFile(info, selfInfo)) {
			continue // the running binary's, by whatever path it was run
		}
		if e.IsDir() && sha256Hex.MatchString(e.Name()) && stale(e, now) {
			os.RemoveAll(p)
		}
	}
	deltas, _ := os.ReadDir(filepath.Join(dir, deltasDir))
	for _, e := range deltas {
		if e.Type().IsRegular() && stale(e, now) {
			os.Remove(filepath.Join(dir, deltasDir, e.Name()))
		}
	}
}

func stale(e os.DirEntry, now time.Time) bool {
	info, err := e.Info()
	return err == nil && now.Sub(info.ModTime()) > unused
}

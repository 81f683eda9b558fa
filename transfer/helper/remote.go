package helper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/boundjson"
	"github.com/ferrytool/ferry/sshconn"
)

// ErrRebuild: the helper could not rebuild a content delta from what the host holds (a layer
// it builds on is missing there, or not what the delta expects). The host is as it was.
var ErrRebuild = errors.New("the helper could not rebuild the content delta")

// Exit statuses of the command that runs the helper, before it runs.
const (
	exitMismatch   = 111 // the binary there is not the one checked: it was not run
	exitCannotExec = 126 // the shell could not execute it (a noexec mount)
)

// errMismatch: the helper's place holds nothing, or not the binary copied.
var errMismatch = errors.New("not the binary copied")

// A session is one run of the helper.
type session struct {
	r  *Remote
	s  *sshconn.Session
	br *bufio.Reader
}

// start runs the helper, its binary checked first, and exchanges hellos with it.
func (r *Remote) start(ctx context.Context) (*session, error) {
	rs, err := r.run(ctx, "")
	if err != nil {
		return nil, err
	}
	if err := rs.hello(ctx); err != nil {
		return nil, err
	}
	return rs, nil
}

// run runs the command first and then, if the binary checks, the helper, and writes the
// helper its hello. A write that fails shows as the reads that follow failing: the command
// ended, and how it exited says why.
func (r *Remote) run(ctx context.Context, first string) (*session, error) {
	s, err := r.c.Start(ctx, first+"{ "+r.check()+" || exit 111; } && exec "+sshconn.Quote(r.path)+" helper")
	if err != nil {
		return nil, err
	}
	io.WriteString(s.Stdin, helloLine(Version))
	return &session{r: r, s: s, br: bufio.NewReader(s.Stdout)}, nil
}

// hello reads the helper's hello; a helper that does not answer is ended, and the error
// says why.
func (rs *session) hello(ctx context.Context) error {
	if _, err := readHello(rs.br, 4<<10); err != nil {
		return rs.failed(ctx, err)
	}
	return nil
}

// failed ends a session that broke the protocol with err, and says why, from how the
// command exited where it did.
func (rs *session) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		rs.s.Close()
		return context.Cause(ctx)
	}
	status := rs.exit()
	var ce *sshconn.CommandError
	if errors.As(status, &ce) {
		switch ce.Status {
		case exitMismatch:
			return fmt.Errorf("%w: ~/%s is %w (sha256 %s): it was not run", ErrUnavailable, rs.r.path, errMismatch, rs.r.bin.Digest)
		case exitCannotExec:
			return fmt.Errorf("%w: ~/%s cannot be executed there (is the home directory mounted noexec?)", ErrUnavailable, rs.r.path)
		}
		if errors.Is(err, ErrVersion) {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, err, ce)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// exit ends the session's input, and returns how its command exited, killing it if it does
// not end: then something other than the helper answered.
func (rs *session) exit() error {
	rs.s.Stdin.Close()
	exit := make(chan error, 1)
	go func() { exit <- rs.s.Wait() }()
	select {
	case status := <-exit:
		return status
	case <-time.After(5 * time.Second):
		rs.s.Close()
		return <-exit
	}
}

// end reads the helper's last reply, and waits for it to exit.
func (rs *session) end(ctx context.Context) (*Reply, error) {
	var rep Reply
	if err := readMsg(rs.br, &rep); err != nil {
		rs.s.Close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("the ferry helper on %s: %w", rs.r.c, rs.waitErr(err))
	}
	rs.s.Stdin.Close()
	if err := rs.s.Wait(); err != nil && rep.Error == "" {
		return nil, fmt.Errorf("the ferry helper on %s: %w", rs.r.c, err)
	}
	return &rep, rep.err(rs.r.c.String())
}

// waitErr is err, with how the helper exited when it has.
func (rs *session) waitErr(err error) error {
	rs.s.Stdin.Close()
	if werr := rs.s.Wait(); werr != nil {
		return fmt.Errorf("%w (%w)", err, werr)
	}
	return err
}

// err is the error a reply carries, if any.
func (rep *Reply) err(host string) error {
	switch {
	case rep.Error == "":
		return nil
	case rep.Rebuild:
		return fmt.Errorf("%w on %s: %s", ErrRebuild, host, rep.Error)
	}
	return fmt.Errorf("the ferry helper on %s: %s", host, rep.Error)
}

// readIndex reads a zstd-compressed content index to its end.
func readIndex(r io.Reader) (*content.Index, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	x := content.NewIndex()
	if err := x.ReadJSON(boundjson.NewDecoder(zr, boundjson.MaxValue)); err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, zr)
	return x, err
}

// A Loading is a load begun on the host: the helper reads the images the delta will likely
// build on while it is made. Send sends it; Close ends a load no delta is sent for.
type Loading struct {
	rs *session
	// Index, when the load asked for it, is the content index of the store, IndexSize its
	// bytes on the link, and Notes what the store said making it.
	Index     *content.Index
	IndexSize int64
	Notes     []string
}

// Load begins a load into the store req names (req.Op is set here), in the helper Probe
// started or a new run of it: the helper reads the images of the store in req.Repos while
// the delta is made. With req.Index, the store's content index comes first, in the Loading.
func (r *Remote) Load(ctx context.Context, req Request) (*Loading, error) {
	req.Op = OpLoad
	rs := r.takeIdle()
	if rs == nil {
		var err error
		if rs, err = r.start(ctx); err != nil {
			return nil, err
		}
	}
	if err := writeMsg(rs.s.Stdin, req); err != nil {
		return nil, rs.failed(ctx, err)
	}
	l := &Loading{rs: rs}
	if req.Index {
		if err := l.index(ctx); err != nil {
			rs.s.Close()
			return nil, err
		}
	}
	return l, nil
}

// index reads the index that comes first.
func (l *Loading) index(ctx context.Context) error {
	rs := l.rs
	var rep Reply
	if err := readMsg(rs.br, &rep); err != nil {
		return rs.failed(ctx, err)
	}
	l.Notes = rep.Notes
	if err := rep.err(rs.r.c.String()); err != nil {
		return err
	}
	if rep.Size <= 0 || rep.Size > maxIndex {
		return fmt.Errorf("the ferry helper on %s: %w: an index of %d bytes", rs.r.c, errProtocol, rep.Size)
	}
	x, err := readIndex(io.LimitReader(rs.br, rep.Size))
	if err != nil {
		return fmt.Errorf("the content index from %s: %w", rs.r.c, rs.waitErr(err))
	}
	l.Index, l.IndexSize = x, rep.Size
	return nil
}

// Close ends the load: the helper stops, and the store is as it was.
func (l *Loading) Close() { l.rs.s.Close() }

// Send sends the helper the content delta delta holds (digest, its sha256 in hex, and size),
// but the bytes the host holds of it from a cut send, and waits for the helper to rebuild it
// and load it. sent is told the bytes sent so far. It returns the helper's last reply and the
// bytes sent, and ends the load.
func (l *Loading) Send(ctx context.Context, digest string, size int64, delta io.ReaderAt, sent func(int64)) (*Reply, int64, error) {
	rs := l.rs
	defer rs.s.Close()
	var first Reply
	err := writeMsg(rs.s.Stdin, Request{Digest: digest, Size: size})
	if err == nil {
		err = readMsg(rs.br, &first)
	}
	if err != nil {
		return nil, 0, rs.failed(ctx, err)
	}
	if err := first.err(rs.r.c.String()); err != nil {
		return &first, 0, err
	}
	if first.Offset < 0 || first.Offset > size {
		return nil, 0, fmt.Errorf("the ferry helper on %s: %w: it holds %d bytes of a delta of %d", rs.r.c, errProtocol, first.Offset, size)
	}
	w := &countWriter{w: rs.s.Stdin, report: sent}
	if _, err := io.Copy(w, io.NewSectionReader(delta, first.Offset, size-first.Offset)); err != nil {
		if ctx.Err() != nil {
			return nil, w.n, context.Cause(ctx)
		}
		return nil, w.n, fmt.Errorf("sending the content delta to %s: %w", rs.r.c, rs.waitErr(err))
	}
	rep, err := rs.end(ctx)
	return rep, w.n, err
}

// countWriter counts what it writes, and reports the count.
type countWriter struct {
	w      io.Writer
	n      int64
	report func(int64)
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if c.report != nil {
		c.report(c.n)
	}
	return n, err
}

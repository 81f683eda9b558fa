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

// A session is one run of the helper.
type session struct {
	r  *Remote
	s  *sshconn.Session
	br *bufio.Reader
}

// start runs the helper, its binary checked first, and exchanges hellos with it.
func (r *Remote) start(ctx context.Context) (*session, error) {
	s, err := r.c.Start(ctx, r.check()+" || exit 111; exec "+sshconn.Quote(r.path)+" helper")
	if err != nil {
		return nil, err
	}
	rs := &session{r: r, s: s, br: bufio.NewReader(s.Stdout)}
	_, err = io.WriteString(s.Stdin, helloLine(Version))
	if err == nil {
		_, err = readHello(rs.br, 4<<10)
	}
	if err != nil {
		return nil, rs.failed(ctx, err)
	}
	return rs, nil
}

// failed ends a session that broke the protocol with err, and says why, from how the
// command exited where it did.
func (rs *session) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		rs.s.Close()
		return context.Cause(ctx)
	}
	rs.s.Stdin.Close()
	exit := make(chan error, 1)
	go func() { exit <- rs.s.Wait() }()
	var status error
	select {
	case status = <-exit:
	case <-time.After(5 * time.Second): // it does not end: something else answered
		rs.s.Close()
		status = <-exit
	}
	var ce *sshconn.CommandError
	if errors.As(status, &ce) {
		switch ce.Status {
		case exitMismatch:
			return fmt.Errorf("%w: ~/%s is not the binary copied (sha256 %s): it was not run", ErrUnavailable, rs.r.path, rs.r.bin.Digest)
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

// Index asks the helper for the content index of the store req names (req.Op is set here).
// It returns the bytes the host sent for it too.
func (r *Remote) Index(ctx context.Context, req Request) (*content.Index, *Reply, int64, error) {
	req.Op = OpIndex
	rs, err := r.start(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	defer rs.s.Close()
	if err := writeMsg(rs.s.Stdin, req); err != nil {
		return nil, nil, 0, rs.failed(ctx, err)
	}
	var rep Reply
	if err := readMsg(rs.br, &rep); err != nil {
		return nil, nil, 0, rs.failed(ctx, err)
	}
	if err := rep.err(r.c.String()); err != nil {
		return nil, &rep, 0, err
	}
	if rep.Size <= 0 || rep.Size > maxIndex {
		return nil, &rep, 0, fmt.Errorf("the ferry helper on %s: %w: an index of %d bytes", r.c, errProtocol, rep.Size)
	}
	x, err := readIndex(io.LimitReader(rs.br, rep.Size))
	if err != nil {
		return nil, &rep, rep.Size, fmt.Errorf("the content index from %s: %w", r.c, rs.waitErr(err))
	}
	rs.s.Stdin.Close()
	if err := rs.s.Wait(); err != nil {
		return nil, &rep, rep.Size, fmt.Errorf("the ferry helper on %s: %w", r.c, err)
	}
	return x, &rep, rep.Size, nil
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
}

// StartLoad begins a load into the store req names (req.Op is set here): the helper starts
// reading req.Base at once.
func (r *Remote) StartLoad(ctx context.Context, req Request) (*Loading, error) {
	req.Op = OpLoad
	rs, err := r.start(ctx)
	if err != nil {
		return nil, err
	}
	if err := writeMsg(rs.s.Stdin, req); err != nil {
		return nil, rs.failed(ctx, err)
	}
	return &Loading{rs: rs}, nil
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

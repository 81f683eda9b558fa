package sshconn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// A CommandError is a remote command that ran and did not succeed.
type CommandError struct {
	Host   string // the destination as the user named it
	Cmd    string // the command, a constant of ferry's
	Status int    // its exit status; 127: not found
	Stderr string // the end of what it wrote to stderr
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s on %s exited with status %d", e.Cmd, e.Host, e.Status)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// maxStderr bounds the stderr a CommandError keeps.
const maxStderr = 4 << 10

// Run runs cmd on the host with stdin (nil: none) as its standard input and returns what it
// printed.
// cmd is passed to the remote user's shell: it must be a constant, never built from user
// input. A command that exits non-zero gives a *CommandError. If reading stdin fails, the
// remote command is signalled and its session closed before it can see the end of its
// input, so it never takes a stream cut short for a whole one. Cancelling ctx closes the
// session.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader) (string, error) {
	s, err := c.ssh.NewSession()
	if err != nil {
		return "", fmt.Errorf("opening a session on %s: %w", c.name, c.why(err))
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: maxStderr}
	s.Stdout, s.Stderr = &stdout, stderr
	in, err := s.StdinPipe()
	if err != nil {
		return "", err
	}
	if err := s.Start(cmd); err != nil {
		return "", fmt.Errorf("starting %s on %s: %w", cmd, c.name, err)
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	r := &readErrReader{r: stdin}
	_, copyErr := io.Copy(in, r)
	if r.err != nil { // our side failed: the command must not see an end of input
		s.Signal(ssh.SIGKILL)
		s.Close()
		s.Wait()
		return "", r.err
	}
	in.Close()
	if err := c.exited(ctx, cmd, s.Wait(), stderr); err != nil {
		return stdout.String(), err
	}
	if copyErr != nil { // it exited 0 without reading all of its input
		return stdout.String(), fmt.Errorf("%s on %s stopped reading its input: %w", cmd, c.name, copyErr)
	}
	return stdout.String(), nil
}

// exited says how a command that ran ended (err from its session's Wait): nil, ctx's cause
// when ctx ended it, a *CommandError when it exited non-zero.
func (c *Client) exited(ctx context.Context, cmd string, err error, stderr *tailBuffer) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var exit *ssh.ExitError
	switch {
	case errors.As(err, &exit):
		return &CommandError{Host: c.name, Cmd: cmd, Status: exit.ExitStatus(), Stderr: stderr.String()}
	case err != nil:
		return fmt.Errorf("%s on %s: %w", cmd, c.name, c.why(err))
	}
	return nil
}

// A Session is a remote command whose input and output stream while it runs.
type Session struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	c      *Client
	ctx    context.Context
	s      *ssh.Session
	cmd    string
	stderr *tailBuffer
	stop   func() bool
}

// Start starts cmd on the host, its standard input and output the caller's to stream. cmd
// is passed to the remote user's shell: a constant of the caller's, any word in it from
// elsewhere quoted (Quote). Cancelling ctx closes the session.
func (c *Client) Start(ctx context.Context, cmd string) (*Session, error) {
	s, err := c.ssh.NewSession()
	if err != nil {
		return nil, fmt.Errorf("opening a session on %s: %w", c.name, c.why(err))
	}
	rs := &Session{c: c, ctx: ctx, s: s, cmd: cmd, stderr: &tailBuffer{max: maxStderr}}
	s.Stderr = rs.stderr
	if rs.Stdin, err = s.StdinPipe(); err == nil {
		rs.Stdout, err = s.StdoutPipe()
	}
	if err == nil {
		err = s.Start(cmd)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("starting %s on %s: %w", cmd, c.name, c.why(err))
	}
	rs.stop = context.AfterFunc(ctx, func() { s.Close() })
	return rs, nil
}

// Wait waits for the command to exit, its output read to its end: nil, or a *CommandError
// when it exits non-zero.
func (s *Session) Wait() error {
	defer s.stop()
	return s.c.exited(s.ctx, s.cmd, s.s.Wait(), s.stderr)
}

// Close ends the session, killing the command if it still runs.
func (s *Session) Close() error {
	s.stop()
	s.s.Signal(ssh.SIGKILL)
	return s.s.Close()
}

// readErrReader remembers the error its reader gave, other than io.EOF.
type readErrReader struct {
	r   io.Reader
	err error
}

func (r *readErrReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// SFTP starts the host's sftp subsystem on the connection. Paths given to the client are
// paths, never shell text; relative ones start at the remote user's home directory.
func (c *Client) SFTP() (*sftp.Client, error) {
	s, err := sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(true))
	if err != nil {
		if c.dead.Load() != nil {
			return nil, c.why(err)
		}
		return nil, fmt.Errorf("starting sftp on %s: %w: enable it in the host's sshd_config (Subsystem sftp internal-sftp)", c.name, err)
	}
	return s, nil
}

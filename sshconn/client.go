package sshconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// A Client is an open SSH connection, possibly through jump hosts or a ProxyCommand.
type Client struct {
	ssh  *ssh.Client
	jump *Client // the hop this connection goes through, closed with it
	name string  // the destination as the user named it
	user string  // the remote user
	dead atomic.Pointer[error]
}

// ciphers puts aes128-gcm first: in Go on amd64 it is the fastest (DESIGN.md: 578 MB/s
// against 327 MB/s for chacha20-poly1305).
var ciphers = append([]string{ssh.CipherAES128GCM}, slices.DeleteFunc(ssh.SupportedAlgorithms().Ciphers,
	func(c string) bool { return c == ssh.CipherAES128GCM })...)

// maxHops bounds a chain of ProxyJump hosts, against one that loops.
const maxHops = 8

// Dial connects and authenticates to d as the ssh config and cfg say: directly, through
// the config's ProxyJump hosts (each reached as its own config says, as ssh -J does), or
// over a ProxyCommand.
func Dial(ctx context.Context, d Destination, cfg Config) (*Client, error) {
	return dialHops(ctx, d, cfg, cfg.Options, 0)
}

// dialHops connects to d, resolved with options as ssh's -o, hops jump hosts away.
func dialHops(ctx context.Context, d Destination, cfg Config, options []string, hops int) (*Client, error) {
	h, err := resolve(ctx, cfg, d, options)
	if err != nil {
		return nil, err
	}
	if h.proxyJump == "" {
		return connect(ctx, h, cfg, nil)
	}
	if hops == maxHops {
		return nil, fmt.Errorf("%s: more than %d ProxyJump hosts: do they loop?", h.name, maxHops)
	}
	// The last jump host is reached through the others, as `ssh -J OTHERS LAST` would.
	jumps := strings.Split(h.proxyJump, ",")
	last := jumps[len(jumps)-1]
	var via *Client
	jd, err := ParseDestination(last)
	if err == nil {
		var opts []string
		if len(jumps) > 1 {
			opts = []string{"ProxyJump=" + strings.Join(jumps[:len(jumps)-1], ",")}
		}
		via, err = dialHops(ctx, jd, cfg, opts, hops+1)
	}
	if err != nil {
		return nil, fmt.Errorf("jump host %s for %s: %w", last, h.name, err)
	}
	return connect(ctx, h, cfg, via)
}

// connect opens an SSH connection to h, directly, through via, or over h's ProxyCommand;
// it closes via when it fails.
func connect(ctx context.Context, h host, cfg Config, via *Client) (c *Client, err error) {
	defer func() {
		if err != nil && via != nil {
			via.Close()
		}
	}()
	ctx, cancel := context.WithTimeoutCause(ctx, h.timeout, fmt.Errorf("no answer within %v", h.timeout))
	defer cancel()
	hostKeys, err := loadHostKeys(h)
	if err != nil {
		return nil, err
	}
	keys, err := loadKeys(h, cfg.Passphrase)
	if err != nil {
		return nil, err
	}
	defer keys.close()
	conf := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: ciphers},
		User:              h.user,
		Auth:              []ssh.AuthMethod{keys.method()},
		HostKeyCallback:   hostKeys.callback,
		HostKeyAlgorithms: hostKeys.algorithms(h.addr),
	}

	var conn net.Conn
	switch {
	case via != nil:
		conn, err = via.ssh.DialContext(ctx, "tcp", h.addr)
	case h.proxyCommand != "":
		conn, err = startProxy(h.proxyCommand, h.addr, cfg.Stderr)
	default:
		conn, err = (&net.Dialer{}).DialContext(ctx, h.network, h.addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("connecting to %s (%s): %w", h.name, h.addr, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, h.addr, conf)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		return nil, fmt.Errorf("connecting to %s (%s): %w", h.name, h.addr, context.Cause(ctx))
	}
	if err != nil {
		if p, ok := conn.(*proxyConn); ok && errors.Is(err, io.EOF) { // the command closed its output
			if perr := p.failure(); perr != nil {
				err = perr
			}
		}
		conn.Close()
		return nil, handshakeError(h, keys, err)
	}
	c = &Client{ssh: ssh.NewClient(sc, chans, reqs), jump: via, name: h.name, user: h.user}
	go c.keepAlive(h.aliveInterval, h.aliveCountMax)
	return c, nil
}

// handshakeError explains why the handshake with h failed.
func handshakeError(h host, keys *keys, err error) error {
	var hke *HostKeyError
	switch {
	case errors.As(err, &hke):
		return hke
	case !strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("connecting to %s (%s): %w", h.name, h.addr, err)
	case len(keys.offered) == 0:
		return fmt.Errorf("%w: no keys to offer %s: start ssh-agent, or name a key with -i or IdentityFile", ErrAuth, h.name)
	}
	return fmt.Errorf("%w: %s accepted none of the keys offered (%s): add one to ~/.ssh/authorized_keys there, "+
		"or name the right one with -i or IdentityFile", ErrAuth, h.name, keys)
}

// keepAlive asks the server for a reply every interval (ServerAliveInterval) and closes
// the connection when none comes for count intervals (ServerAliveCountMax).
func (c *Client) keepAlive(interval time.Duration, count int) {
	closed := make(chan struct{})
	go func() { c.ssh.Wait(); close(closed) }()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-closed:
			return
		case err := <-reply:
			if err == nil {
				continue
			}
		case <-time.After(time.Duration(count) * interval):
		}
		dead := fmt.Errorf("%w: %s did not answer keepalives for %v (ServerAliveInterval %v, ServerAliveCountMax %d); "+
			"the connection was closed", ErrKeepAlive, c.name, time.Duration(count)*interval, interval, count)
		c.dead.Store(&dead)
		c.ssh.Close()
		return
	}
}

// why is err, or, when keepalives closed the connection, that reason with err.
func (c *Client) why(err error) error {
	if dead := c.dead.Load(); dead != nil && err != nil {
		return fmt.Errorf("%w (%v)", *dead, err)
	}
	return err
}

// Close closes the connection and the jump hosts' connections it went through.
func (c *Client) Close() error {
	err := c.ssh.Close()
	if c.jump != nil {
		c.jump.Close()
	}
	return err
}

// DialUnix connects to the unix socket at path on the host (direct-streamlocal). When sshd
// cannot, the error says why if a shell command on the host can tell: ErrNoSocket,
// ErrSocketDenied or ErrSocketRefused.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.ssh.DialContext(ctx, "unix", path)
	if err == nil {
		return conn, nil
	}
	if c.dead.Load() != nil {
		return nil, c.why(err)
	}
	var oce *ssh.OpenChannelError
	switch {
	case !errors.As(err, &oce):
		return nil, fmt.Errorf("opening %s on %s: %w", path, c.name, err)
	case oce.Reason == ssh.Prohibited:
		return nil, fmt.Errorf("opening %s on %s: sshd there does not forward to unix sockets (%w): "+
			"set AllowStreamLocalForwarding yes in its sshd_config", path, c.name, err)
	}
	return nil, c.socketError(ctx, path, err)
}

// socketError asks the host why sshd could not connect to the socket at path, with a
// fixed command whose one argument, path, is quoted.
func (c *Client) socketError(ctx context.Context, path string, dialErr error) error {
	q := Quote(path)
	out, _ := c.output(ctx, "echo ferry; test -S "+q+" && echo socket; test -w "+q+" && echo writable")
	said := strings.Fields(out)
	switch {
	case !slices.Contains(said, "ferry"): // no shell to ask
		return fmt.Errorf("sshd on %s could not connect to %s (%w): check that it exists and that %s may use it",
			c.name, path, dialErr, c.user)
	case !slices.Contains(said, "socket"):
		return fmt.Errorf("%w %s on %s", ErrNoSocket, path, c.name)
	case !slices.Contains(said, "writable"):
		return fmt.Errorf("%w: %s may not use %s", ErrSocketDenied, c.name, path)
	}
	return fmt.Errorf("%w: nothing listens on %s on %s", ErrSocketRefused, path, c.name)
}

// output runs a command on the host and returns what it printed.
func (c *Client) output(ctx context.Context, cmd string) (string, error) {
	s, err := c.ssh.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	out, err := s.Output(cmd)
	return string(out), err
}

// String is the destination as the user named it.
func (c *Client) String() string { return c.name }

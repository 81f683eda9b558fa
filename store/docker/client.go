package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultHost is the daemon used when neither New's argument nor
// $DOCKER_HOST names one.
const DefaultHost = "unix:///var/run/docker.sock"

// maxAPIVersion is the newest API version the client asks for. It is what
// dockerd 20.10 speaks; newer daemons serve it too unless they dropped it
// (see Ping).
const maxAPIVersion = "1.41"

// maxJSONSize caps a JSON response body (not the load message stream).
const maxJSONSize = 64 << 20

// DefaultStall is how long an exchange with a daemon on a host (Dial) may go without
// progress.
const DefaultStall = 2 * time.Minute

// Client talks to one docker daemon over HTTP on a dialed connection.
type Client struct {
	// Stall, when not 0, bounds every exchange with the daemon: a request for metadata must
	// be answered whole within it; a load or a save goes on as long as bytes move, or the
	// load reports progress, at least once within it. Dial sets DefaultStall; a daemon of
	// this machine is trusted to answer.
	Stall time.Duration

	host string // for messages; "" when the dialer was given
	http *http.Client

	mu      sync.Mutex
	version string // negotiated API version, "" before Ping
	server  string // the newest API version the daemon serves, "" before Ping
}

// New returns a client for host ("unix:///path", "tcp://h:p"); "" means
// $DOCKER_HOST or DefaultHost. Nothing is dialed until the first request.
func New(host string) (*Client, error) {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultHost
	}
	network, addr, err := parseHost(host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c := NewWithDialer(func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	})
	c.host = host
	return c, nil
}

func parseHost(host string) (network, addr string, err error) {
	scheme, rest, _ := strings.Cut(host, "://")
	switch scheme {
	case "unix":
		if rest == "" {
			return "", "", fmt.Errorf("docker host %q has no socket path", host)
		}
		return "unix", rest, nil
	case "tcp":
		rest = strings.TrimSuffix(rest, "/")
		if rest == "" {
			return "", "", fmt.Errorf("docker host %q has no address", host)
		}
		if _, _, err := net.SplitHostPort(rest); err != nil {
			rest = net.JoinHostPort(rest, "2375")
		}
		return "tcp", rest, nil
	}
	return "", "", fmt.Errorf("unsupported docker host %q: want unix:///path or tcp://host:port", host)
}

// NewWithDialer returns a client whose connections come from dial, for
// example a daemon's socket reached through an SSH connection.
func NewWithDialer(dial func(ctx context.Context) (net.Conn, error)) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := dial(ctx)
			if err != nil {
				return nil, &dialError{err}
			}
			return conn, nil
		},
		DisableCompression: true,
		MaxIdleConns:       4,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// Ping checks that the daemon answers and negotiates the API version that
// later requests use: the daemon's own version if older than 1.41, else
// 1.41, or the oldest the daemon still serves if that is newer (dockerd 29
// refuses versions before 1.44). Requests made before Ping call it first.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, "/_ping", nil, nil, false)
	if err != nil {
		return err
	}
	resp.Body.Close()

	server := resp.Header.Get("API-Version")
	if server == "" {
		server = "1.24" // daemons before 1.25 do not say; assume the oldest the docker CLI speaks
	}
	if _, _, err := parseVersion(server); err != nil {
		return err
	}
	v := maxAPIVersion
	switch {
	case versionLess(server, v):
		v = server
	case server != v:
		// A newer daemon may no longer serve v.
		oldest, err := c.minAPIVersion(ctx)
		if err != nil {
			return err
		}
		if versionLess(v, oldest) {
			v = oldest
		}
	}

	c.mu.Lock()
	c.version, c.server = v, server
	c.mu.Unlock()
	return nil
}

// minAPIVersion asks the daemon for the oldest API version it serves.
func (c *Client) minAPIVersion(ctx context.Context) (string, error) {
	resp, err := c.send(ctx, http.MethodGet, "/version", nil, nil, false)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct{ MinAPIVersion string }
	if err := decodeJSON(resp.Body, &v); err != nil {
		return "", err
	}
	if v.MinAPIVersion == "" {
		return "1.12", nil // the oldest any daemon that does not say accepts
	}
	if _, _, err := parseVersion(v.MinAPIVersion); err != nil {
		return "", err
	}
	return v.MinAPIVersion, nil
}

// versionLess reports whether API version a ("1.41") is older than b. Both
// must have passed parseVersion.
func versionLess(a, b string) bool {
	am, an, _ := parseVersion(a)
	bm, bn, _ := parseVersion(b)
	return am < bm || am == bm && an < bn
}

func parseVersion(v string) (major, minor int, err error) {
	ma, mi, ok := strings.Cut(v, ".")
	major, err1 := strconv.Atoi(ma)
	minor, err2 := strconv.Atoi(mi)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("docker daemon reports an invalid API version %q", v)
	}
	return major, minor, nil
}

// apiVersion returns the negotiated API version, pinging the daemon first
// if no request has done so yet.
func (c *Client) apiVersion(ctx context.Context) (string, error) {
	c.mu.Lock()
	v := c.version
	c.mu.Unlock()
	if v != "" {
		return v, nil
	}
	if err := c.Ping(ctx); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version, nil
}

// do sends a request for metadata to the versioned API path and returns the response if
// the daemon answered 2xx; the answer must be read whole within c.Stall.
func (c *Client) do(ctx context.Context, method, path string, query url.Values) (*http.Response, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, method, "/v"+v+path, query, nil, false)
}

// stream is do for a load (a body, sent as a tar) or a save: it goes on while it makes
// progress.
func (c *Client) stream(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Response, error) {
	v, err := c.apiVersion(ctx)
	if err != nil {
		return nil, err
	}
	return c.send(ctx, method, "/v"+v+path, query, body, true)
}

// send sends a request to path as it is and returns the response if the daemon answered
// 2xx. The exchange ends with a *StallError when it makes no progress within c.Stall:
// when streams, bytes of the body or the response moving are progress; else nothing is,
// and the answer must be read whole within it.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body io.Reader, streams bool) (*http.Response, error) {
	ctx, dl := newDeadline(ctx, c.Stall, method+" "+path, streams)
	u := url.URL{Scheme: "http", Host: "docker", Path: path, RawQuery: query.Encode()}
	if body != nil {
		body = progressBody{body, dl.extend}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		dl.stop()
		return nil, err
	}
	if body != nil {
		// Without it the daemon parses the tar as a form.
		req.Header.Set("Content-Type", "application/x-tar")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		err = c.requestError(ctx, err)
		dl.stop()
		return nil, err
	}
	resp.Body = &deadlineBody{r: progressBody{resp.Body, dl.extend}, c: resp.Body, ctx: ctx, dl: dl}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readAPIError(resp)
	}
	return resp, nil
}

// A deadline ends an exchange that makes no progress in time: it cancels the exchange's
// context with a *StallError.
type deadline struct {
	timer   *time.Timer // nil: no deadline
	after   time.Duration
	streams bool // progress extends it
	cancel  context.CancelCauseFunc
}

func newDeadline(ctx context.Context, after time.Duration, what string, streams bool) (context.Context, *deadline) {
	ctx, cancel := context.WithCancelCause(ctx)
	d := &deadline{after: after, streams: streams, cancel: cancel}
	if after > 0 {
		d.timer = time.AfterFunc(after, func() { cancel(&StallError{What: what, After: after, Streams: streams}) })
	}
	return ctx, d
}

// extend is told of progress.
func (d *deadline) extend() {
	if d.timer != nil && d.streams {
		d.timer.Reset(d.after)
	}
}

func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
	d.cancel(nil)
}

// progressBody tells of the bytes that pass through it, read or, as net/http sends a
// request body, written.
type progressBody struct {
	r        io.Reader
	progress func()
}

func (b progressBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.progress()
	}
	return n, err
}

func (b progressBody) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(progressWriter{w, b.progress}, b.r) // through the reader's own WriteTo, if it has one
}

type progressWriter struct {
	w        io.Writer
	progress func()
}

func (w progressWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if n > 0 {
		w.progress()
	}
	return n, err
}

// deadlineBody is a response body under its exchange's deadline: a read the deadline ended
// fails with why, and closing it ends the exchange.
type deadlineBody struct {
	r   io.Reader
	c   io.Closer
	ctx context.Context
	dl  *deadline
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.ctx.Err() != nil {
		err = context.Cause(b.ctx)
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.dl.stop()
	return b.c.Close()
}

// requestError explains a request that got no response.
func (c *Client) requestError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var de *dialError
	if !errors.As(err, &de) {
		return err
	}
	if c.host == "" {
		return fmt.Errorf("cannot reach docker daemon: %w", de.err)
	}
	return fmt.Errorf("cannot reach docker daemon at %s: %w: is dockerd running? set DOCKER_HOST to use another daemon", c.host, de.err)
}

// maxErrorBody is how much of an error response is read: its JSON decoded whole, the
// message is then cut (printable).
const maxErrorBody = 4 << 20

func readAPIError(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return fmt.Errorf("reading the docker daemon's %s: %w", resp.Status, err)
	}
	var m struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	switch {
	case json.Unmarshal(body, &m) == nil && m.Message != "":
		msg = m.Message
	case msg == "":
		msg = resp.Status
	}
	return newAPIError(resp.StatusCode, msg)
}

// getJSON decodes the answer to a GET of the versioned API path into v.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeJSON(resp.Body, v)
}

func decodeJSON(r io.Reader, v any) error {
	if err := json.NewDecoder(io.LimitReader(r, maxJSONSize)).Decode(v); err != nil {
		return fmt.Errorf("decoding docker daemon response: %w", err)
	}
	return nil
}

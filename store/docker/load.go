package docker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// Message is one message of the stream a daemon answers a load with:
// progress, a line of output, or an error.
type Message struct {
	Stream         string `json:"stream,omitempty"` // "Loaded image: busybox:1\n"
	Status         string `json:"status,omitempty"` // "Loading layer"
	ID             string `json:"id,omitempty"`     // short layer ID the status is about
	Progress       string `json:"progress,omitempty"`
	ProgressDetail struct {
		Current int64 `json:"current,omitempty"`
		Total   int64 `json:"total,omitempty"`
	} `json:"progressDetail"`
	Error       string `json:"error,omitempty"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail,omitempty"`
}

// Load streams the tar r into the daemon (`docker load`), calls progress,
// if not nil, for each message the daemon answers, and returns the
// references it loaded: tags, or IDs ("sha256:…") of untagged images.
//
// A failed load returns an error carrying the daemon's message (an
// *APIError) along with the references loaded before the failure. If
// reading r fails, Load returns that error and breaks off the upload, so
// the daemon sees a cut stream and loads nothing. Load does not close r; if
// ctx is cancelled while r.Read blocks, Load returns without waiting for it.
func (c *Client) Load(ctx context.Context, r io.Reader, progress func(Message)) ([]string, error) {
	up := newUpload(ctx, r)
	defer up.close()
	fail := func(err error) error {
		if rerr := up.failure(); rerr != nil {
			return fmt.Errorf("loading images: reading input: %w", rerr)
		}
		return fmt.Errorf("loading images: %w", err)
	}

	resp, err := c.stream(ctx, http.MethodPost, "/images/load", url.Values{"quiet": {"0"}}, up.body)
	if err != nil {
		return nil, fail(err)
	}
	defer resp.Body.Close()

	var loaded []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4<<10), maxLoadMessage)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var m Message
		if err := json.Unmarshal(line, &m); err != nil {
			return loaded, fail(fmt.Errorf("reading docker daemon response: %w", err))
		}
		if progress != nil {
			progress(m)
		}
		if msg := m.errorMessage(); msg != "" {
			return loaded, fail(newAPIError(resp.StatusCode, msg))
		}
		ref, ok, err := loadedRef(m.Stream)
		if err != nil {
			return loaded, fail(err)
		}
		if ok {
			loaded = append(loaded, ref)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a message of over %d bytes", maxLoadMessage)
		} else if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return loaded, fail(fmt.Errorf("reading docker daemon response: %w", err))
	}
	if err := up.failure(); err != nil {
		return loaded, fail(err)
	}
	return loaded, nil
}

func (m *Message) errorMessage() string {
	if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
		return m.ErrorDetail.Message
	}
	return m.Error
}

// maxLoadMessage bounds one message of a load's answer (a line of JSON).
const maxLoadMessage = 1 << 20

// loadedRef picks the reference out of the daemon's report of a loaded
// image: "Loaded image: x:1\n" or "Loaded image ID: sha256:…\n". A report of
// something that is no image reference is an error.
func loadedRef(line string) (string, bool, error) {
	line = strings.TrimSpace(line)
	if id, ok := strings.CutPrefix(line, "Loaded image ID: "); ok {
		if _, err := v1.NewHash(id); err != nil {
			return "", false, fmt.Errorf("the docker daemon reports loading image ID %s: %w", archive.Quote(id), err)
		}
		return id, true, nil
	}
	if ref, ok := strings.CutPrefix(line, "Loaded image: "); ok {
		if _, err := name.ParseReference(ref); err != nil {
			return "", false, fmt.Errorf("the docker daemon reports loading %s, no image reference", archive.Quote(ref))
		}
		return ref, true, nil
	}
	return "", false, nil
}

// upload feeds the caller's reader to the request body through a pipe.
// net/http does not give up a request until its body read returns, so the
// pipe lets a cancelled ctx, or Load returning, end that read even while
// the caller's Read blocks (that Read is then abandoned). It remembers the
// first error of the caller's reader; the transport then drops the
// connection mid-body.
type upload struct {
	body bigReads
	stop func() bool // ends the context watch

	mu  sync.Mutex
	err error
}

var errLoadReturned = errors.New("load has returned")

// copyBuffer is the size of the pieces an upload moves: each piece through a pipe is a
// hand-over between goroutines, and small ones cost more CPU than the copying.
const copyBuffer = 1 << 20

// bigReads is the upload's body: net/http copies a body through its WriteTo, here in
// pieces of copyBuffer rather than its own 32 KiB.
type bigReads struct{ *io.PipeReader }

func (b bigReads) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(w, readerFunc(b.Read), make([]byte, copyBuffer))
}

func newUpload(ctx context.Context, r io.Reader) *upload {
	pr, pw := io.Pipe()
	u := &upload{body: bigReads{pr}}
	u.stop = context.AfterFunc(ctx, func() { pr.CloseWithError(context.Cause(ctx)) })
	go func() {
		_, err := io.CopyBuffer(pw, readerFunc(func(p []byte) (int, error) {
			n, err := r.Read(p)
			if err != nil && err != io.EOF {
				u.mu.Lock()
				u.err = err
				u.mu.Unlock()
			}
			return n, err
		}), make([]byte, copyBuffer))
		pw.CloseWithError(err)
	}()
	return u
}

// failure returns the error the caller's reader failed with, if any.
func (u *upload) failure() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// close ends the upload: the copy stops at its next write.
func (u *upload) close() {
	u.stop()
	u.body.CloseWithError(errLoadReturned)
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

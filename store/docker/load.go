package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
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

	resp, err := c.do(ctx, http.MethodPost, "/images/load", url.Values{"quiet": {"0"}}, up.body)
	if err != nil {
		return nil, fail(err)
	}
	defer resp.Body.Close()

	var loaded []string
	dec := json.NewDecoder(resp.Body)
	for {
		var m Message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			if ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			return loaded, fail(fmt.Errorf("reading docker daemon response: %w", err))
		}
		if progress != nil {
			progress(m)
		}
		if msg := m.errorMessage(); msg != "" {
			return loaded, fail(&APIError{StatusCode: resp.StatusCode, Message: msg})
		}
		if ref, ok := loadedRef(m.Stream); ok {
			loaded = append(loaded, ref)
		}
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

// loadedRef picks the reference out of the daemon's report of a loaded
// image: "Loaded image: x:1\n" or "Loaded image ID: sha256:…\n".
func loadedRef(line string) (string, bool) {
	line = strings.TrimSpace(line)
	for _, prefix := range []string{"Loaded image ID: ", "Loaded image: "} {
		if ref, ok := strings.CutPrefix(line, prefix); ok {
			return ref, true
		}
	}
	return "", false
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

package docker

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ErrNotFound matches, through errors.Is, a daemon answer of 404 Not Found,
// such as inspecting an image the daemon does not have.
var ErrNotFound = errors.New("not found")

// APIError is an error reported by the daemon.
type APIError struct {
	// StatusCode is the HTTP status of the response. An error the daemon
	// reports inside a streamed response (as Load's do) keeps the status
	// the stream started with, usually 200.
	StatusCode int
	// Message is the daemon's own message.
	Message string
}

// newAPIError keeps the daemon's message fit for a terminal (printable).
func newAPIError(status int, msg string) *APIError {
	return &APIError{StatusCode: status, Message: printable(msg)}
}

func (e *APIError) Error() string {
	return "docker daemon: " + e.Message
}

// maxMessage is how much of a message from a daemon an error keeps.
const maxMessage = 1024

// printable returns a message from a daemon fit for a terminal: what is not printable
// (control characters, newlines too) and invalid bytes escaped as Go escapes them, cut to its first maxMessage
// bytes, saying how long it was.
func printable(msg string) string {
	var b strings.Builder
	for i, r := range msg {
		if b.Len() >= maxMessage {
			fmt.Fprintf(&b, "… (%d bytes)", len(msg))
			break
		}
		switch {
		case r == utf8.RuneError:
			fmt.Fprintf(&b, "\\x%02x", msg[i])
		case !unicode.IsPrint(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ErrStalled matches, through errors.Is, an exchange with the daemon that made no
// progress in time (a *StallError).
var ErrStalled = errors.New("no progress")

// A StallError ends an exchange with the daemon that made no progress in time.
type StallError struct {
	What    string // the request: "POST /v1.41/images/load"
	After   time.Duration
	Streams bool // progress would have extended it
}

func (e *StallError) Error() string {
	if e.Streams {
		return fmt.Sprintf("the docker daemon made no progress on %s for %s", e.What, e.After)
	}
	return fmt.Sprintf("the docker daemon did not answer %s within %s", e.What, e.After)
}

func (e *StallError) Is(target error) bool { return target == ErrStalled }

// Is reports whether a 404 error is being matched against ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// dialError marks a failure to connect, as opposed to a failure of a
// request on an open connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

package docker

import (
	"errors"
	"net/http"
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

func (e *APIError) Error() string {
	return "docker daemon: " + e.Message
}

// Is reports whether a 404 error is being matched against ErrNotFound.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// dialError marks a failure to connect, as opposed to a failure of a
// request on an open connection.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

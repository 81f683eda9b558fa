package sshconn

import "errors"

var (
	// ErrInvalidDestination: a destination that is not [user@]host[:port] or
	// ssh://[user@]host[:port][/path]. Nothing was dialed.
	ErrInvalidDestination = errors.New("invalid SSH destination")
	// ErrUnknownHostKey matches a *HostKeyError for a host known_hosts does not know.
	ErrUnknownHostKey = errors.New("unknown host key")
	// ErrHostKeyChanged matches a *HostKeyError for a host whose key is not the one
	// known_hosts records.
	ErrHostKeyChanged = errors.New("host key changed")
	// ErrAuth: the server accepted none of the keys offered.
	ErrAuth = errors.New("authentication failed")
	// ErrNoSocket: there is no socket at the path on the remote host.
	ErrNoSocket = errors.New("no such socket")
	// ErrSocketDenied: the remote user may not connect to the socket.
	ErrSocketDenied = errors.New("permission denied")
	// ErrSocketRefused: the socket exists but nothing listens on it.
	ErrSocketRefused = errors.New("connection refused")
)

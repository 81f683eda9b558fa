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
	// ErrHostKeyRevoked: the host offered a key, or a certificate signed by a key, that
	// known_hosts marks @revoked.
	ErrHostKeyRevoked = errors.New("host key revoked")
	// ErrUnsupported: the ssh config asks for something ferry does not do and that would
	// change where or how it connects. Nothing was dialed.
	ErrUnsupported = errors.New("unsupported ssh setting")
	// ErrProxyCommand: the ProxyCommand ended before the connection was made.
	ErrProxyCommand = errors.New("ProxyCommand failed")
	// ErrKeepAlive: the host stopped answering keepalives (ServerAliveInterval ×
	// ServerAliveCountMax) and the connection was closed.
	ErrKeepAlive = errors.New("host stopped answering")
	// ErrAuth: the server accepted none of the keys offered.
	ErrAuth = errors.New("authentication failed")
	// ErrNoSocket: there is no socket at the path on the remote host.
	ErrNoSocket = errors.New("no such socket")
	// ErrSocketDenied: the remote user may not connect to the socket.
	ErrSocketDenied = errors.New("permission denied")
	// ErrSocketRefused: the socket exists but nothing listens on it.
	ErrSocketRefused = errors.New("connection refused")
)

// Package sshconn opens SSH connections the way the OpenSSH client would, with
// golang.org/x/crypto/ssh. A host's settings are what `ssh -G` prints for it where the ssh
// client is installed, else what its own reading of ~/.ssh/config and /etc/ssh/ssh_config
// gives (Host and Match blocks, Include, tokens; parser). It follows HostName, Port, User,
// AddressFamily, ProxyCommand, ProxyJump chains, IdentityFile, CertificateFile,
// IdentityAgent, IdentitiesOnly, known_hosts files with @cert-authority and @revoked,
// HostKeyAlias, StrictHostKeyChecking, ConnectTimeout and ServerAliveInterval/CountMax;
// settings it does not follow and that would change the connection are refused
// (ErrUnsupported), the rest ignored (keywords.go). It authenticates with ssh-agent
// ($SSH_AUTH_SOCK or IdentityAgent), certificates and key files (asking for passphrases
// through a callback, only for a key the server accepts), verifies host keys strictly
// (HostKeyError says how to add an unknown one), and keeps connections alive.
// Destinations are [user@]host[:port] or ssh://[user@]host[:port][/path] (ParseDestination).
//
// Over a Client, stores on a host reach what they need: a unix socket (DialUnix,
// direct-streamlocal, as `ssh -L` does; docker's and containerd's sockets), the sftp subsystem
// (SFTP; OCI layout directories), a remote command with a stream on its stdin (Run;
// podman's fixed commands), which is killed rather than given an end of input when the stream
// fails, or one whose input and output both stream (Start; the ferry helper). Commands are
// constants of the callers, never built from user input: a path in one is quoted (Quote). When sshd cannot
// open a socket, DialUnix runs one fixed diagnostic (`test`, the path single-quoted) to say
// why: ErrNoSocket, ErrSocketDenied or ErrSocketRefused.
//
// It owns nothing docker-, containerd- or podman-specific, and never prints or prompts by
// itself.
package sshconn

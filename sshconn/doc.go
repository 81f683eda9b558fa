// Package sshconn opens SSH connections the way the OpenSSH client would, with
// golang.org/x/crypto/ssh only. It reads ~/.ssh/config and /etc/ssh/ssh_config (Host aliases,
// HostName, Port, User, IdentityFile, IdentityAgent, ProxyJump, UserKnownHostsFile,
// GlobalKnownHostsFile, HostKeyAlias, ConnectTimeout), authenticates with ssh-agent
// ($SSH_AUTH_SOCK or IdentityAgent) and key files (asking for passphrases
// through a callback, only for a key the server accepts), verifies host keys strictly
// against known_hosts, keeps connections alive, and dials unix sockets on the remote host
// (direct-streamlocal, as `ssh -L` does).
//
// It owns nothing docker-specific: package transfer feeds DialUnix to the docker client.
// It runs no remote command except one fixed diagnostic (`test`) when sshd cannot open a
// socket, with the socket path single-quoted. It never prints and never prompts by itself.
package sshconn

// Package docker is a small client for the Docker Engine API: it pings a
// daemon, reads its info and image metadata, streams `docker save` out of it
// and streams `docker load` into it.
//
// It owns only the HTTP conversation with one daemon. It does not read or
// write the bundle format (package archive does), decide what a daemon
// already has (package dedupe does), or open SSH connections: a remote
// daemon is reached by passing a dialer to NewWithDialer, for example one
// that calls ssh.Client.Dial("unix", "/var/run/docker.sock").
//
// Image tars are never buffered: Save returns the daemon's response body and
// Load streams its reader into the request. The client speaks plain HTTP on
// unix:// and tcp:// hosts; TLS (DOCKER_TLS_VERIFY) is not supported.
//
// It depends on the standard library only, not on github.com/docker/docker.
package docker

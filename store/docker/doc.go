// Package docker is the docker daemon as a store and a source: the reference "docker", on
// this machine ($DOCKER_HOST or the default socket) or on a host, its socket reached through
// the SSH connection (Dial). It holds a small Docker Engine API client (Client: ping and
// version negotiation, info, image lists and inspection, removal, and `docker save` and
// `docker load` streamed, never buffered), standard library only, on unix:// and tcp://
// hosts; TLS (DOCKER_TLS_VERIFY) is not supported.
//
// As a source, one streamed `docker save` of all the images, read through package archive
// (Open, Copy); SaveLayers says what it will carry before it starts. As a store (Store), what
// it holds is the layer chains of its images (Inventory), and it takes a verified bundle
// through its load, manifest.json last, thin where the daemon holds the layers left out
// (Receive), or a docker-archive stream, plain or compressed (LoadStream). It says whether its
// load takes zstd (TakesZstd) and removes the step images of a stepped send (StepLabel,
// RemoveSteps).
//
// A daemon on the containerd image store takes complete images only through its load, and
// its inventory says so; Behind finds the containerd it keeps its images in (where docker 27
// and later say, else the usual sockets), checks that it is the daemon's, and returns it as a
// store (package store/containerd) whose receiver names images where docker lists them.
//
// It does not decide what to send or in which steps (package transfer does), nor read or
// write the bundle format (package archive does), nor open SSH connections (package sshconn
// does).
package docker

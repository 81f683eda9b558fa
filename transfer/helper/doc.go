// Package helper is ferry on the far side of a send: the same binary, copied to a host over
// SFTP into the SSH user's cache (Dir, a directory named by the binary's digest), checked by
// digest before each run, and run there over an SSH session to answer one request of a
// small versioned protocol on its standard input and output: the content index of a store on
// the host, or a content delta to rebuild and load into it.
//
// The near side (Probe, Remote) finds whether the helper can run on a host (a static build
// of the host's OS and architecture, a cache it may write and execute from) and says why
// not (ErrUnavailable); the far side (Serve) refuses a protocol version it does not know,
// reads nothing but the protocol, keeps a delta's bytes as they come so that a cut send
// resumes where it stopped, and prunes what older runs left. Neither side knows stores: the
// far side's work is a Server's (package transfer's), the near side's choices are the
// caller's.
package helper

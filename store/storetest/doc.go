// Package storetest is the store conformance suite (restic's internal/backend/test, kopia's
// blobtesting.VerifyStorage): one list of checks every kind of store passes, on this
// machine and, where the kind can be on a host, over SSH. Each store package runs it for its
// own kind from its tests (Run, with a Target describing the store and how to look at it
// without ferry), and so does the in-memory fake, store/mem, that the orchestration is
// unit-tested against.
//
// The suite loads images it is given (Images): DockerImages builds runnable ones in a
// throwaway dockerd, for the real kinds; MemImages builds them in memory with no binary, for
// the fake. NewSSH and its Host start the sshds the real kinds are reached through.
//
// Only tests import this package. Their packages import store/all too (the suite opens
// stores by reference), so they are external test packages (package docker_test).
package storetest

// Package testenv starts throwaway infrastructure for integration tests:
// private dockerd instances, local docker-registry servers and tiny
// busybox-based images built without touching any public registry. Besides the
// host's dockerd 20.10 it runs the current toolchain from a cached Debian 13 root
// (TrixieRoot, built by internal/scripts/trixie.sh): dockerd 26 with the classic and
// with the containerd image store (StartDockerFlavor), containerd 1.7
// (StartContainerd), podman 5 (Podman5) and skopeo 1.18 (Skopeo118), each in a
// mount and PID namespace of its own (see sandbox).
//
// Everything a helper starts is stopped and removed again through
// t.Cleanup. Helpers skip the test when a required binary is missing,
// unless FERRY_TEST_REQUIRE=1 is set, in which case they fail it.
package testenv

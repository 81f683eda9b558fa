// Package testenv starts throwaway infrastructure for integration tests:
// private dockerd instances, local docker-registry servers and tiny
// busybox-based images built without touching any public registry. Besides the
// host's dockerd 20.10 it runs newer toolchains from cached Debian roots (Root,
// built by internal/scripts/root.sh): Trixie's docker 26.1, containerd 1.7, podman
// 5.4 and skopeo 1.18, and Sid's docker 28.5, containerd 2.1, podman 5.8 and
// skopeo 1.22; dockerd with the classic and with the containerd image store
// (StartDockerFlavor), containerd (Root.StartContainerd), podman and skopeo
// (Root.StartPodman, Root.StartSkopeo), each in a mount and PID namespace of its
// own (see sandbox).
//
// Everything a helper starts is stopped and removed again through
// t.Cleanup. Helpers skip the test when a required binary is missing,
// unless FERRY_TEST_REQUIRE=1 is set, in which case they fail it.
package testenv

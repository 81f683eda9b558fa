// Package testenv starts throwaway infrastructure for integration tests:
// private dockerd instances, local docker-registry servers and tiny
// busybox-based images built without touching any public registry.
//
// Everything a helper starts is stopped and removed again through
// t.Cleanup. Helpers skip the test when a required binary is missing,
// unless FERRY_TEST_REQUIRE=1 is set, in which case they fail it.
package testenv

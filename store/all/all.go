// Package all registers every kind of store ferry knows, in the order the reference grammar
// lists them (containers/image's alltransports). The program imports it where it is
// assembled; the library packages that work with stores import none of the kinds.
package all

import (
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/containerd"
	"github.com/ferrytool/ferry/store/docker"
	"github.com/ferrytool/ferry/store/oci"
	"github.com/ferrytool/ferry/store/podman"
	"github.com/ferrytool/ferry/store/pool"
	"github.com/ferrytool/ferry/store/registry"
)

func init() {
	store.Register(
		docker.Kind,
		podman.Kind,
		containerd.Kind,
		oci.Kind,
		registry.Kind,
		pool.Kind,
	)
}

package transfer

// The kinds of store ferry knows: each registers itself with package store. A new kind is
// one package and one line here.
import (
	_ "github.com/ferrytool/ferry/store/containerd"
	_ "github.com/ferrytool/ferry/store/docker"
	_ "github.com/ferrytool/ferry/store/oci"
	_ "github.com/ferrytool/ferry/store/podman"
	_ "github.com/ferrytool/ferry/store/pool"
	_ "github.com/ferrytool/ferry/store/registry"
)

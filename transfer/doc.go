// Package transfer moves bundles between ferry's stores: it reads images from a source (the
// docker daemon, a registry, an OCI layout directory) into a bundle with package archive, and
// loads bundles into a store (the docker daemon, an OCI layout directory, a registry). Send
// streams images read once into the docker daemons of many hosts over SSH, each only the
// layers it lacks.
//
// It owns the meaning of references such as oci:DIR:tag and registry:HOST/PREFIX and the
// order of operations that keeps a store unchanged when a load fails; the bundle format
// belongs to archive, the Docker Engine API to transfer/docker, SSH to transfer/sshconn.
package transfer

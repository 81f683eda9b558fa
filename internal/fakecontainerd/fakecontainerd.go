// Package fakecontainerd is a containerd that lies, for tests: a gRPC server on a unix socket
// that a real sshd forwards as it forwards containerd's, answering what no containerd would
// (a listing of its content store that never ends, or nothing at all). Nothing here is for
// ferry itself.
package fakecontainerd

import (
	"fmt"
	"net"
	"testing"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"google.golang.org/grpc"
)

// listContent is the method that lists a content store.
const listContent = "/containerd.services.content.v1.Content/List"

// Start serves a lying containerd on a unix socket at path until the test ends. With
// endless, its content store lists blobs without end; every other call, and with !endless
// every call, is answered with silence.
func Start(t testing.TB, path string, endless bool) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("fakecontainerd: %v", err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		if method, _ := grpc.MethodFromServerStream(stream); endless && method == listContent {
			return list(stream)
		}
		<-stream.Context().Done()
		return stream.Context().Err()
	}))
	go srv.Serve(ln) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
}

// list answers a listing of the content store with blobs, a thousand a message, until the
// client goes.
func list(stream grpc.ServerStream) error {
	var req contentapi.ListContentRequest
	if err := stream.RecvMsg(&req); err != nil {
		return err
	}
	for n := 0; ; {
		var resp contentapi.ListContentResponse
		for range 1000 {
			resp.Info = append(resp.Info, &contentapi.Info{Digest: fmt.Sprintf("sha256:%064x", n), Size: 1})
			n++
		}
		if err := stream.SendMsg(&resp); err != nil {
			return err
		}
	}
}

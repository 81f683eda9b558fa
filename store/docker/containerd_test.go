package docker

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store/containerd"
)

// TestBehindOtherContainerd: a containerd that is not the daemon's is not taken for it.
// While docker holds images, they are missing there; while it holds none, nothing tells the
// two apart before the images are named, and then docker does not list them: the receive
// fails and the names go.
func TestBehindOtherContainerd(t *testing.T) {
	d := testenv.StartDockerFlavor(t, testenv.Docker26Containerd)
	other := testenv.StartContainerd(t)
	c, err := New(d.Host)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(c)
	ctx := context.Background()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctd, err := containerd.New(ctx, s.dialer(other.Socket), "moby", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctd.Close()
	if err := s.keepsImagesIn(ctx, ctd, info); err != nil {
		t.Fatalf("an empty daemon and an empty containerd of the same revision: %v", err)
	}

	var buf bytes.Buffer
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(testenv.BusyboxV1(t), []string{"app:1"}, src); err != nil {
		t.Fatal(err)
	}
	if err := archive.Write(ctx, &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	v := &viaContainerd{Store: ctd.WithSnapshotter(info.Driver), d: s, name: "docker via containerd:moby"}
	rcv, err := v.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = archive.Read(ctx, &buf, rcv, archive.ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), "docker does not list them") {
		t.Fatalf("got %v, want docker not to list the images", err)
	}
	t.Logf("%v", err)
	if got := other.Ctr(t, "-n", "moby", "images", "ls", "-q"); strings.TrimSpace(got) != "" {
		t.Errorf("names left in the other containerd: %q", got)
	}

	d.BusyboxImage(t, "held:1", nil)
	err = s.keepsImagesIn(ctx, ctd, info)
	if err == nil || !strings.Contains(err.Error(), "held:1") {
		t.Errorf("got %v, want the daemon's image missing there", err)
	}
	if b, err := s.Behind(ctx); err != nil || b == nil || b.String() != "docker via containerd:moby" {
		t.Errorf("Behind: %v, %v; want the daemon's containerd", b, err)
	} else {
		b.Close()
	}
}

// TestInfoSaysContainerd: docker 28 says in /info where its containerd is and which
// namespace it keeps images in; its exec root is not beside its socket, so that is how
// ferry finds it.
func TestInfoSaysContainerd(t *testing.T) {
	d := testenv.StartDockerFlavor(t, testenv.Docker28Containerd)
	c, err := New(d.Host)
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(c)
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Containerd == nil || strings.TrimPrefix(info.Containerd.Address, "unix://") != d.Containerd ||
		info.Containerd.Namespaces.Containers != d.Namespace {
		t.Fatalf("/info says containerd %+v, want %s, namespace %s", info.Containerd, d.Containerd, d.Namespace)
	}
	if got := s.candidates(d.Containerd); len(got) != 1 || got[0] != d.Containerd {
		t.Errorf("candidates %v, want only where /info says", got)
	}
	b, err := s.Behind(t.Context())
	if err != nil || b == nil {
		t.Fatalf("Behind: %v, %v; want the daemon's containerd", b, err)
	}
	defer b.Close()
	t.Logf("%s: containerd %s (revision %q), namespace %s", b, info.Containerd.Address, info.ContainerdCommit.ID, info.Containerd.Namespaces.Containers)
}

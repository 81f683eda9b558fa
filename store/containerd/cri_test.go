package containerd_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/testenv"
)

// TestCRI asks a node's CRI image service (containerd 1.7's and 2.1's CRI plugin, on the
// socket ferry sends to) what kubelet asks before it starts a container: images sent into
// k8s.io, whole and thin, are found by the name in a pod spec with the ID (config digest)
// and size of what was sent, and listed under their repo tags, so kubelet would not pull
// them.
func TestCRI(t *testing.T) {
	e := newSSHEnv(t)
	for _, r := range testenv.Roots {
		t.Run("containerd"+r.Containerd, func(t *testing.T) {
			t.Parallel()
			testCRI(t, e, r.StartContainerd(t, testenv.ContainerdOptions{CRI: true}))
		})
	}
}

func testCRI(t *testing.T, e *sshEnv, c *testenv.Containerd) {
	dir := t.TempDir()
	base := writeBundle(t, dir, "base:1", testenv.BusyboxV1(t))
	app := writeBundle(t, dir, "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))
	// What the node holds of each image, as its manifest names it (its uncompressed layer
	// compressed): the results' Full.
	full := map[string]int64{}
	res := e.mustSend(t, []string{base}, e.host(c))
	if res.Skipped != 0 || res.Layers != 1 {
		t.Fatalf("sending base:1: %+v", res)
	}
	full[base] = res.Full
	// app:1 is base:1's layer and one of its own: only its own travels.
	if res = e.mustSend(t, []string{app}, e.host(c)); res.Skipped != 1 || res.Layers != 2 {
		t.Fatalf("sending app:1 thin: %+v", res)
	}
	full[app] = res.Full

	conn, err := grpc.NewClient("unix://"+c.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cri := runtime.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sent := map[string]*runtime.Image{} // by repo tag
	for _, s := range []struct{ bundle, ref string }{{base, "base:1"}, {app, "app:1"}} {
		want := criImage(t, s.bundle, "docker.io/library/"+s.ref, full[s.bundle])
		sent[want.RepoTags[0]] = want
		// kubelet asks for the image of a pod spec by its name as written there.
		var got *runtime.Image
		for deadline := time.Now().Add(10 * time.Second); got == nil; time.Sleep(100 * time.Millisecond) {
			// The CRI plugin learns of new images from containerd's events: soon, not at once.
			st, err := cri.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: s.ref}})
			if err != nil {
				t.Fatalf("ImageStatus %s: %v\ncontainerd log:\n%s", s.ref, err, c.Log())
			}
			if got = st.Image; got == nil && time.Now().After(deadline) {
				t.Fatalf("ImageStatus %s: not found: kubelet would pull it", s.ref)
			}
		}
		if got.Id != want.Id || got.Size != want.Size || !slices.Equal(got.RepoTags, want.RepoTags) {
			t.Errorf("ImageStatus %s: id %s, size %d, tags %v; want %s, %d, %v",
				s.ref, got.Id, got.Size, got.RepoTags, want.Id, want.Size, want.RepoTags)
		}
	}

	// A pod may pin its image by digest. base:1's manifest is the node's as the bundle has it
	// (its one layer is gzip-compressed already; app:1's manifest was rewritten to name its
	// own layer compressed).
	pinned := "base@" + readBundle(t, base).Images[0].Manifest.Digest.String()
	st, err := cri.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: pinned}})
	if err != nil || st.Image == nil {
		t.Fatalf("ImageStatus %s: %v, %v: kubelet would pull it", pinned, st, err)
	}
	if want := criImage(t, base, "", 0); st.Image.Id != want.Id {
		t.Errorf("ImageStatus %s: id %s, want %s", pinned, st.Image.Id, want.Id)
	}

	list, err := cri.ListImages(ctx, &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range list.Images {
		t.Logf("ListImages: %s %v %d bytes, digests %v", img.Id, img.RepoTags, img.Size, img.RepoDigests)
		for _, tag := range img.RepoTags {
			if want := sent[tag]; want != nil && img.Id == want.Id && img.Size == want.Size {
				delete(sent, tag)
			}
		}
	}
	for tag := range sent {
		t.Errorf("ListImages lacks %s", tag)
	}
}

// readBundle reads the bundle at path.
func readBundle(t *testing.T, path string) *archive.Bundle {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := archive.Read(context.Background(), f, archive.Discard, archive.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// criImage is what the CRI image service should say of the image of bundle path, named
// name: its config digest as ID, and size, what containerd counts (manifest, config and
// layers as stored: what ferry sent, or would have, its uncompressed layers compressed).
func criImage(t *testing.T, path, name string, size int64) *runtime.Image {
	t.Helper()
	img := readBundle(t, path).Images[0]
	return &runtime.Image{Id: img.Config.Digest.String(), RepoTags: []string{name}, Size: uint64(size)}
}

//go:build linux

package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
)

// testDaemon is a throwaway dockerd with a client for it.
type testDaemon struct {
	*testenv.Docker
	client *Client
}

func startDaemon(t *testing.T) *testDaemon {
	t.Helper()
	d := testenv.StartDocker(t)
	c, err := New(d.Host)
	if err != nil {
		t.Fatal(err)
	}
	return &testDaemon{Docker: d, client: c}
}

// importImage creates the image tag, with a layer of its own, and returns
// its ID.
func (d *testDaemon) importImage(t *testing.T, tag string) string {
	t.Helper()
	return d.BusyboxImage(t, tag, map[string]string{"/marker": tag})
}

// save saves refs with Client.Save and returns the tar.
func (d *testDaemon) save(t *testing.T, refs ...string) []byte {
	t.Helper()
	rc, err := d.client.Save(context.Background(), refs)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading saved tar: %v", err)
	}
	return b
}

// requireAbsent fails the test if the daemon has the image.
func (d *testDaemon) requireAbsent(t *testing.T, name string) {
	t.Helper()
	if _, err := d.client.Inspect(context.Background(), name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("inspecting %s after a failed load: got %v, want ErrNotFound", name, err)
	}
}

func TestPing(t *testing.T) {
	d := startDaemon(t)
	c, err := New(d.Host)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.version != "1.41" {
		t.Errorf("negotiated API version %q with dockerd 20.10, want 1.41", c.version)
	}
}

func TestInfo(t *testing.T) {
	d := startDaemon(t)
	info, err := d.client.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.ServerVersion == "" || info.Driver == "" {
		t.Errorf("info lacks ServerVersion or Driver: %+v", info)
	}
	if info.ContainerdSnapshotter {
		t.Errorf("dockerd %s with %s reports the containerd snapshotter", info.ServerVersion, info.Driver)
	}
}

func TestImagesAndInspect(t *testing.T) {
	d := startDaemon(t)
	ctx := context.Background()
	id := d.importImage(t, "ferry-test/list:1")

	images, err := d.client.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(images, func(s ImageSummary) bool { return s.ID == id })
	if i < 0 || !slices.Contains(images[i].RepoTags, "ferry-test/list:1") {
		t.Fatalf("image list %+v lacks %s tagged ferry-test/list:1", images, id)
	}

	img, err := d.client.Inspect(ctx, "ferry-test/list:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != id || len(img.RootFS.Layers) != 1 || img.Os != "linux" || img.Architecture == "" {
		t.Errorf("unexpected inspect result %+v", img)
	}

	_, err = d.client.Inspect(ctx, "ferry-test/missing:1")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("inspecting a missing image: got %v, want ErrNotFound", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || !strings.Contains(apiErr.Message, "missing") {
		t.Errorf("got %#v, want an *APIError with status 404 naming the image", apiErr)
	}
}

func TestSave(t *testing.T) {
	d := startDaemon(t)
	d.importImage(t, "ferry-test/save:1")
	rc, err := d.client.Save(context.Background(), []string{"ferry-test/save:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var manifest []struct{ RepoTags, Layers []string }
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(manifest) != 1 || !slices.Equal(manifest[0].RepoTags, []string{"ferry-test/save:1"}) || len(manifest[0].Layers) != 1 {
		t.Fatalf("unexpected manifest.json %+v", manifest)
	}

	if _, err := d.client.Save(context.Background(), []string{"ferry-test/missing:1"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("saving a missing image: got %v, want ErrNotFound", err)
	}
}

func TestSaveCancel(t *testing.T) {
	d := startDaemon(t)
	d.importImage(t, "ferry-test/cancel:1")
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := d.client.Save(ctx, []string{"ferry-test/cancel:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading after cancel: got %v, want context.Canceled", err)
	}
}

func TestLoad(t *testing.T) {
	d := startDaemon(t)
	ctx := context.Background()
	id := d.importImage(t, "ferry-test/load:1")
	saved := d.save(t, "ferry-test/load:1")
	d.Run(t, "rmi", "ferry-test/load:1")
	d.requireAbsent(t, id)

	var msgs []Message
	loaded, err := d.client.Load(ctx, bytes.NewReader(saved), func(m Message) { msgs = append(msgs, m) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded, []string{"ferry-test/load:1"}) {
		t.Errorf("loaded %q, want [ferry-test/load:1]", loaded)
	}
	if !slices.ContainsFunc(msgs, func(m Message) bool { return m.Status == "Loading layer" && m.ProgressDetail.Total > 0 }) {
		t.Errorf("no layer progress among %+v", msgs)
	}
	img, err := d.client.Inspect(ctx, "ferry-test/load:1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != id {
		t.Errorf("loaded image has ID %s, want %s", img.ID, id)
	}
}

func TestLoadUntagged(t *testing.T) {
	d := startDaemon(t)
	id := d.importImage(t, "ferry-test/untagged:1")
	saved := d.save(t, id)
	d.Run(t, "rmi", "ferry-test/untagged:1")

	loaded, err := d.client.Load(context.Background(), bytes.NewReader(saved), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded, []string{id}) {
		t.Errorf("loaded %q, want [%s]", loaded, id)
	}
	d.Run(t, "rmi", id)
}

func TestLoadTruncated(t *testing.T) {
	d := startDaemon(t)
	id := d.importImage(t, "ferry-test/truncated:1")
	b := d.save(t, "ferry-test/truncated:1")
	d.Run(t, "rmi", "ferry-test/truncated:1")

	loaded, err := d.client.Load(context.Background(), bytes.NewReader(b[:len(b)/2]), nil)
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("loading a truncated tar: got %v (loaded %q), want an *APIError", err, loaded)
	}
	t.Logf("daemon answers a truncated tar with: %v", err)
	d.requireAbsent(t, id)
	d.requireAbsent(t, "ferry-test/truncated:1")
}

// TestLoadAborted breaks off the upload from the caller's side, the way a
// producer writing into an io.Pipe does when its source fails.
func TestLoadAborted(t *testing.T) {
	d := startDaemon(t)
	id := d.importImage(t, "ferry-test/aborted:1")
	b := d.save(t, "ferry-test/aborted:1")
	d.Run(t, "rmi", "ferry-test/aborted:1")

	// dockerd 20.10 loads nothing even when the whole tar has arrived:
	// it reads the body to its end before loading.
	whole := append(b, make([]byte, 64<<10)...) // trailing zeros push the tar's end onto the wire
	for _, tt := range []struct {
		name string
		sent []byte // written before the abort
	}{
		{"midway", b[:len(b)/2]},
		{"whole tar sent", whole},
	} {
		t.Run(tt.name, func(t *testing.T) {
			errSource := errors.New("source went away")
			pr, pw := io.Pipe()
			go func() {
				pw.Write(tt.sent)
				pw.CloseWithError(errSource)
			}()
			loaded, err := d.client.Load(context.Background(), pr, nil)
			if !errors.Is(err, errSource) {
				t.Fatalf("got %v (loaded %q), want the reader's error", err, loaded)
			}
			t.Logf("aborted load: %v", err)
			d.requireAbsent(t, id)
			d.requireAbsent(t, "ferry-test/aborted:1")
		})
	}
}

func TestLoadCancel(t *testing.T) {
	d := startDaemon(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	errStop := errors.New("stop")
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		pw.Write(make([]byte, 4096))
		cancel(errStop)
	}()
	if _, err := d.client.Load(ctx, pr, nil); !errors.Is(err, errStop) {
		t.Fatalf("got %v, want the cancellation cause", err)
	}
}

// TestSaveEstimateDaemon: a daemon's save of two images built there carries no more than
// SaveLayers expects.
func TestSaveEstimateDaemon(t *testing.T) {
	d := startDaemon(t)
	files := map[string]string{}
	for i := range 300 {
		files[fmt.Sprintf("usr/share/doc/%d", i)] = strings.Repeat("x", (i*7919)%(24<<10))
	}
	d.BusyboxImage(t, "base:1", files)
	d.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "app\n"})
	s := NewStore(d.client)
	refs := []string{"base:1", "app:1"}
	_, est, err := s.SaveLayers(t.Context(), refs)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := s.Save(t.Context(), refs)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	n, err := io.Copy(io.Discard, stream)
	if err != nil {
		t.Fatal(err)
	}
	if est < n {
		t.Errorf("estimate %d for a save of %d bytes", est, n)
	}
	t.Logf("estimate %d for a save of %d bytes", est, n)
}

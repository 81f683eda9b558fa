package containerd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/archive/spool"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/docker"
	"github.com/ferrytool/ferry/store/storetest"
	"github.com/ferrytool/ferry/transfer"
)

// writeBundle writes img tagged tag as a bundle file in dir and returns its path.
func writeBundle(t *testing.T, dir, tag string, img v1.Image) string {
	t.Helper()
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(img, []string{tag}, src); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, strings.NewReplacer(":", "-", "/", "-").Replace(tag)+".tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := archive.Write(context.Background(), f, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return path
}

func load(t *testing.T, path, to string) (*transfer.LoadResult, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return transfer.Load(ctx, f, transfer.LoadOptions{To: to})
}

// images lists the names of the images in namespace ns.
func images(t *testing.T, c *testenv.Containerd, ns string) string {
	t.Helper()
	return c.Ctr(t, "-n", ns, "images", "ls", "-q")
}

// run runs cmd in a fresh container of image ref in namespace ns (no network: ctr gives
// a container a network namespace of its own with loopback only) and returns its output.
func run(t *testing.T, c *testenv.Containerd, ns, ref string, cmd ...string) string {
	t.Helper()
	id := "t" + strings.ReplaceAll(t.Name(), "/", "-")
	id = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, id)
	return c.Ctr(t, append([]string{"-n", ns, "run", "--rm", ref, id}, cmd...)...)
}

func TestLocal(t *testing.T) {
	c := testenv.StartContainerd(t)
	t.Setenv("CONTAINERD_ADDRESS", c.Socket)
	t.Setenv("CONTAINERD_NAMESPACE", "")
	dir := t.TempDir()
	app := writeBundle(t, dir, "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))

	t.Run("load and run", func(t *testing.T) {
		res, err := load(t, app, "containerd")
		if err != nil {
			t.Fatal(err)
		}
		if res.Store != "containerd:k8s.io" || len(res.Images) != 1 || res.Images[0].Ref != "app:1" {
			t.Errorf("loaded %+v into %s", res.Images, res.Store)
		}
		// named by tag, and by digest as the CRI names what it pulls
		if got := strings.Fields(images(t, c, "k8s.io")); len(got) != 2 || got[0] != "docker.io/library/app:1" ||
			!strings.HasPrefix(got[1], "docker.io/library/app@sha256:") {
			t.Errorf("images in k8s.io: %q", got)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/app:1", "cat", "/marker"); got != "app 1\n" {
			t.Errorf("cat /marker: %q", got)
		}
		// Loading again changes nothing and still succeeds.
		if _, err := load(t, app, "containerd:k8s.io"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("inventory", func(t *testing.T) {
		inv, err := transfer.Inventory(context.Background(), "containerd", "", transfer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(app)
		defer f.Close()
		b, err := archive.Read(context.Background(), f, archive.Discard, archive.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img := b.Images[0]
		for i := range img.Layers {
			if !inv.Has(img, i) {
				t.Errorf("the inventory lacks layer %d", i)
			}
		}
		if inv.Complete || len(inv.Chains) != 2 || len(inv.DiffIDs) < 1 {
			t.Errorf("inventory: %+v", inv)
		}
	})

	t.Run("save", func(t *testing.T) {
		var buf bytes.Buffer
		b, err := transfer.Save(context.Background(), &buf, []string{"app:1"}, transfer.SaveOptions{From: "containerd:k8s.io"})
		if err != nil {
			t.Fatal(err)
		}
		again, err := archive.Read(context.Background(), &buf, archive.Discard, archive.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(again.Images) != 1 || again.Images[0].ID() != b.Images[0].ID() || again.Images[0].RepoTags[0] != "app:1" {
			t.Errorf("saved %+v", again.Images)
		}
	})

	t.Run("damaged blob", func(t *testing.T) {
		path := writeBundle(t, dir, "bad:1", testenv.BusyboxV1(t, map[string]string{"marker": "damage me\n"}))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, []byte("damage me"))
		data[i] = 'D'
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = load(t, path, "containerd")
		if !errors.Is(err, archive.ErrDigestMismatch) {
			t.Fatalf("loading a damaged bundle: %v, want a digest mismatch", err)
		}
		if got := images(t, c, "k8s.io"); strings.Contains(got, "bad") {
			t.Errorf("a damaged bundle named an image: %q", got)
		}
	})

	t.Run("left-out layer", func(t *testing.T) {
		f, _ := os.Open(writeBundle(t, dir, "thin:1", testenv.BusyboxV1(t, map[string]string{"marker": "thin\n"}, map[string]string{"more": "x"})))
		defer f.Close()
		sp, err := spool.New(t.TempDir(), archive.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		b, err := archive.Read(context.Background(), f, sp, archive.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Leave out the marker layer, which the store does not hold.
		thin := b.LeaveOut(func(blob *archive.Blob) bool { return blob == b.Images[0].Layers[1].Blob })
		var buf bytes.Buffer
		if err := archive.Write(context.Background(), &buf, thin, sp, archive.WriteOptions{}); err == nil {
			_, err = transfer.Load(context.Background(), &buf, transfer.LoadOptions{To: "containerd"})
			if !errors.Is(err, archive.ErrMissingBlob) {
				t.Errorf("loading a bundle leaving out a layer the store lacks: %v", err)
			}
		}
		if got := images(t, c, "k8s.io"); strings.Contains(got, "thin") {
			t.Errorf("an incomplete bundle named an image: %q", got)
		}
	})
}

// sshEnv is an sshd this machine's containerds are reached through.
type sshEnv struct {
	ssh  *storetest.SSH
	sshd *testenv.SSHD
	opts transfer.SendOptions
}

func newSSHEnv(t *testing.T) *sshEnv {
	t.Helper()
	s := storetest.NewSSH(t)
	return &sshEnv{ssh: s, sshd: s.Start(t, testenv.SSHDOptions{}), opts: transfer.SendOptions{Options: s.Options, To: "containerd:k8s.io"}}
}

// own returns an environment of the same key and known_hosts with an sshd of its own, for a
// parallel subtest that changes its options or cuts its sessions.
func (e *sshEnv) own(t *testing.T) *sshEnv {
	t.Helper()
	return &sshEnv{ssh: e.ssh, sshd: e.ssh.Start(t, testenv.SSHDOptions{}), opts: e.opts}
}

func (e *sshEnv) host(c *testenv.Containerd) string { return "ssh://root@" + e.sshd.Addr + c.Socket }

func (e *sshEnv) send(t *testing.T, args []string, opts transfer.SendOptions, hosts ...string) ([]transfer.HostResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return transfer.Send(ctx, args, hosts, opts)
}

func (e *sshEnv) mustSend(t *testing.T, args []string, hosts ...string) transfer.HostResult {
	t.Helper()
	res, err := e.send(t, args, e.opts, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: sent %d of %d bytes, %d of %d layers skipped", res[0].Host, res[0].Sent, res[0].Full, res[0].Skipped, res[0].Layers)
	return res[0]
}

func TestSSH(t *testing.T) {
	c := testenv.StartContainerd(t)
	e := newSSHEnv(t)
	host := e.host(c)
	dir := t.TempDir()
	app := writeBundle(t, dir, "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))
	big := writeBundle(t, dir, "big:1", testenv.BusyboxV1(t, map[string]string{"marker": "big\n", "data": string(testenv.RandomData(8 << 20))}))

	var cold transfer.HostResult
	t.Run("cold", func(t *testing.T) {
		cold = e.mustSend(t, []string{app}, host)
		if cold.Layers != 2 || cold.Skipped != 0 || cold.Sent != cold.Full || len(cold.Loaded) != 1 || cold.Loaded[0] != "app:1" {
			t.Errorf("cold send: %+v", cold)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/app:1", "cat", "/marker"); got != "app 1\n" {
			t.Errorf("cat /marker: %q", got)
		}
	})

	t.Run("already there", func(t *testing.T) {
		res := e.mustSend(t, []string{app}, host)
		if res.Sent != 0 || res.Skipped != 2 {
			t.Errorf("sending again: %+v, want nothing sent", res)
		}
	})

	t.Run("warm", func(t *testing.T) {
		// big:1 shares the busybox layer: only its own layer, config and manifest travel.
		res := e.mustSend(t, []string{big}, host)
		if res.Skipped != 1 || res.Sent < 8<<20 || res.Sent > 8<<20+64<<10 {
			t.Errorf("warm send: %+v", res)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/big:1", "cat", "/marker"); got != "big\n" {
			t.Errorf("cat /marker: %q", got)
		}
	})

	t.Run("cut mid-blob", func(t *testing.T) {
		const size = 48 << 20
		cut := writeBundle(t, dir, "cut:1", testenv.BusyboxV1(t, map[string]string{"marker": "cut\n", "data": string(testenv.RandomData(size))}))
		opts := e.opts
		var once sync.Once
		opts.Progress = func(_ string, sent, _ int64) {
			if sent > size/2 {
				once.Do(e.sshd.KillSessions)
			}
		}
		_, err := e.send(t, []string{cut}, opts, host)
		var se *transfer.SendError
		if !errors.As(err, &se) {
			t.Fatalf("got %v, want the host to fail with a cut connection", err)
		}
		t.Logf("cut: %v", err)
		if got := images(t, c, "k8s.io"); strings.Contains(got, "cut") {
			t.Errorf("a cut transfer named an image: %q", got)
		}
		active := c.Ctr(t, "-n", "k8s.io", "content", "active")
		t.Logf("ingests after the cut:\n%s", active)
		if !strings.Contains(active, "ferry-") {
			t.Errorf("no ingest left to resume")
		}
		res := e.mustSend(t, []string{cut}, host)
		if res.Sent > res.Full-size/2+8<<20 || res.Sent < 1<<20 {
			t.Errorf("resumed send: %d of %d bytes sent, want about the half left", res.Sent, res.Full)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/cut:1", "cat", "/marker"); got != "cut\n" {
			t.Errorf("cat /marker: %q", got)
		}
	})
}

// compressible returns n bytes of text that gzip compresses several times over.
func compressible(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of a log that compresses well, as binaries and text do\n", i)
	}
	return b.String()[:n]
}

// TestSSHCompressed: an uncompressed layer travels gzip-compressed, as ferry compresses it,
// and the node keeps that blob; sent again, nothing travels; an image on top of it carries
// only its own layer; a node that holds the layer only unpacked is sent nothing for it either.
func TestSSHCompressed(t *testing.T) {
	c := testenv.StartContainerd(t)
	e := newSSHEnv(t)
	host := e.host(c)
	dir := t.TempDir()
	const size = 16 << 20
	text := map[string]string{"marker": "text\n", "text": compressible(size)}
	img := testenv.BusyboxV1(t, text)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	packed, err := archive.Pack(io.Discard, rc, compress.DefaultLevel)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	content := func() string { return c.Ctr(t, "-n", "k8s.io", "content", "ls", "-q") }

	t.Run("cold", func(t *testing.T) {
		res := e.mustSend(t, []string{writeBundle(t, dir, "text:1", img)}, host)
		if res.Sent > size/4 || res.Sent != res.Full || res.Skipped != 0 {
			t.Errorf("cold send: %+v, want the %d-byte layer sent compressed (%d bytes)", res, size, packed.Size)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/text:1", "cat", "/marker"); got != "text\n" {
			t.Errorf("cat /marker: %q", got)
		}
		if got := content(); !strings.Contains(got, packed.Digest.String()) || strings.Contains(got, packed.Raw.String()) {
			t.Errorf("the content store does not hold the layer as ferry compresses it (%s, from %s):\n%s", packed.Digest, packed.Raw, got)
		}
	})
	t.Run("already there", func(t *testing.T) {
		res := e.mustSend(t, []string{writeBundle(t, dir, "text:1", img)}, host)
		if res.Sent != 0 || res.Skipped != 2 {
			t.Errorf("sending again: %+v, want nothing sent", res)
		}
	})
	t.Run("warm", func(t *testing.T) {
		more := writeBundle(t, dir, "more:1", testenv.BusyboxV1(t, text, map[string]string{"more": "more\n"}))
		res := e.mustSend(t, []string{more}, host)
		if res.Sent > 64<<10 || res.Skipped != 2 || res.Layers != 3 {
			t.Errorf("warm send: %+v, want only the new layer sent", res)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/more:1", "cat", "/more"); got != "more\n" {
			t.Errorf("cat /more: %q", got)
		}
	})
	t.Run("held unpacked", func(t *testing.T) {
		c.Ctr(t, "-n", "k8s.io", "content", "rm", packed.Digest.String())
		other := writeBundle(t, dir, "other:1", testenv.BusyboxV1(t, text, map[string]string{"other": "other\n"}))
		res := e.mustSend(t, []string{other}, host)
		if res.Sent > 64<<10 || res.Skipped != 2 {
			t.Errorf("send to a node holding the layer unpacked: %+v, want only the new layer sent", res)
		}
		if got := run(t, c, "k8s.io", "docker.io/library/other:1", "cat", "/other"); got != "other\n" {
			t.Errorf("cat /other: %q", got)
		}
	})
}

// TestOtherNamespace: a node whose containerd holds every blob in another namespace gets
// the image with no byte sent, each layer counted held (and unpacked), not sent.
func TestOtherNamespace(t *testing.T) {
	c := testenv.Sid.StartContainerd(t)
	e := newSSHEnv(t)
	app := writeBundle(t, t.TempDir(), "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))
	e.opts.To = "containerd:default"
	if res := e.mustSend(t, []string{app}, e.host(c)); res.Held != 0 || res.Skipped != 0 || res.Sent != res.Full {
		t.Errorf("into default: %+v, want every layer sent", res)
	}
	e.opts.To = "containerd:k8s.io"
	if res := e.mustSend(t, []string{app}, e.host(c)); res.Held != res.Layers || res.Skipped != 0 || res.Sent != 0 {
		t.Errorf("into k8s.io: %+v, want every layer held, nothing sent", res)
	}
	if got := run(t, c, "k8s.io", "docker.io/library/app:1", "cat", "/marker"); got != "app 1\n" {
		t.Errorf("cat /marker: %q", got)
	}
}

// TestNodes sends to several containerds at once, one of them unreachable: the others get
// the images, and the error names the one that failed.
func TestNodes(t *testing.T) {
	nodes := []*testenv.Containerd{testenv.StartContainerd(t), testenv.StartContainerd(t)}
	e := newSSHEnv(t)
	app := writeBundle(t, t.TempDir(), "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))
	hosts := []string{e.host(nodes[0]), e.host(nodes[1]), "ssh://root@" + e.sshd.Addr + "/run/nothing/containerd.sock"}
	res, err := e.send(t, []string{app}, e.opts, hosts...)
	var se *transfer.SendError
	if !errors.As(err, &se) || len(se.Failed) != 1 || se.Failed[0].Host != hosts[2] {
		t.Fatalf("got %v, want the third host to fail", err)
	}
	if !errors.Is(err, sshconn.ErrNoSocket) {
		t.Errorf("the failure does not say there is no socket: %v", err)
	}
	for i, n := range nodes {
		if res[i].Err != nil || res[i].Sent != res[i].Full || !strings.HasPrefix(res[i].Store, "containerd:k8s.io on ") {
			t.Errorf("node %d: %+v", i, res[i])
		}
		if got := run(t, n, "k8s.io", "docker.io/library/app:1", "cat", "/marker"); got != "app 1\n" {
			t.Errorf("node %d: cat /marker: %q", i, got)
		}
	}
}

var _ store.Store // the package under test registers through transfer

// TestDockerStore is docker 26 and 28 on the containerd image store, as a docker store:
// ferry finds the daemon's containerd (docker 26's beside its socket, as
// /var/run/docker/containerd is beside /var/run/docker.sock; docker 28's where /info says)
// and sends there, on this machine and over SSH, only the blobs docker lacks, resuming a cut
// blob; docker lists and runs the images.
func TestDockerStore(t *testing.T) {
	e := newSSHEnv(t)
	for _, r := range testenv.Roots {
		t.Run(string(r.DockerContainerd), func(t *testing.T) {
			t.Parallel()
			dockerStore(t, e.own(t), testenv.StartDockerFlavor(t, r.DockerContainerd))
		})
	}
}

func dockerStore(t *testing.T, e *sshEnv, d *testenv.Docker) {
	e.opts.To = "docker"
	var notes []string
	e.opts.Note = func(msg string) { notes = append(notes, msg) }
	dir := t.TempDir()
	base := writeBundle(t, dir, "base:1", testenv.BusyboxV1(t))
	app := writeBundle(t, dir, "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))
	const size = 32 << 20
	big := writeBundle(t, dir, "big:1", testenv.BusyboxV1(t, map[string]string{"marker": "big\n", "data": string(testenv.RandomData(size))}))
	host := "ssh://root@" + e.sshd.Addr + strings.TrimPrefix(d.Host, "unix://")
	listed := func(t *testing.T, tag string) {
		t.Helper()
		if got := d.Run(t, "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(got, tag+"\n") {
			t.Errorf("docker images does not list %s:\n%s", tag, got)
		}
	}

	t.Run("load on this machine", func(t *testing.T) {
		f, err := os.Open(base)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		c, err := docker.New(d.Host)
		if err != nil {
			t.Fatal(err)
		}
		res, err := transfer.Load(context.Background(), f, transfer.LoadOptions{To: "docker", Store: docker.NewStore(c),
			Options: transfer.Options{Note: func(msg string) { t.Errorf("note: %s", msg) }}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Store != "docker via containerd:moby" || len(res.Images) != 1 {
			t.Errorf("loaded %+v into %s", res.Images, res.Store)
		}
		listed(t, "base:1")
		if got := d.Run(t, "run", "--rm", "--pull=never", "--network", "none", "base:1", "echo", "ok"); got != "ok\n" {
			t.Errorf("docker run base:1: %q", got)
		}
	})

	t.Run("warm over SSH", func(t *testing.T) {
		// app:1 shares the busybox layer with base:1: its own layer, config and manifest travel.
		res := e.mustSend(t, []string{app}, host)
		if !strings.HasSuffix(res.Store, " via containerd:moby") {
			t.Errorf("store %q", res.Store)
		}
		if res.Complete != "" || res.Skipped != 1 || res.Layers != 2 || res.Sent > 64<<10 {
			t.Errorf("warm send: %+v, want the base layer left out", res)
		}
		listed(t, "app:1")
		if got := d.Cat(t, "app:1", "/marker"); got != "app 1\n" {
			t.Errorf("cat /marker: %q", got)
		}
	})

	t.Run("already there", func(t *testing.T) {
		res := e.mustSend(t, []string{app}, host)
		if res.Sent != 0 || res.Skipped != 2 {
			t.Errorf("sending again: %+v, want nothing sent", res)
		}
	})

	t.Run("cut mid-blob", func(t *testing.T) {
		d.Run(t, "rmi", "base:1", "app:1") // cold: docker holds nothing
		opts := e.opts
		var once sync.Once
		opts.Progress = func(_ string, sent, _ int64) {
			if sent > size/2 {
				once.Do(e.sshd.KillSessions)
			}
		}
		if _, err := e.send(t, []string{big}, opts, host); err == nil {
			t.Fatal("the send survived its connection being cut")
		}
		if got := d.Run(t, "images", "-q"); strings.TrimSpace(got) != "" {
			t.Errorf("a cut send left images docker lists:\n%s", got)
		}
		res := e.mustSend(t, []string{big}, host)
		if res.Sent > res.Full-size/2+8<<20 || res.Sent < 1<<20 {
			t.Errorf("resumed send: %d of %d bytes sent, want about the half left", res.Sent, res.Full)
		}
		listed(t, "big:1")
		if got := d.Cat(t, "big:1", "/marker"); got != "big\n" {
			t.Errorf("cat /marker: %q", got)
		}
	})

	t.Run("compressed", func(t *testing.T) {
		// An uncompressed layer travels compressed; docker names the image by the rewritten
		// manifest's digest, as containerd does (the receiver checks), and runs it.
		const size = 16 << 20
		text := writeBundle(t, dir, "text:1", testenv.BusyboxV1(t, map[string]string{"marker": "text\n", "text": compressible(size)}))
		res := e.mustSend(t, []string{text}, host)
		if res.Sent > size/4 || res.Skipped != 1 { // docker holds busybox's layer, from big:1
			t.Errorf("send: %+v, want the %d-byte layer sent compressed", res, size)
		}
		listed(t, "text:1")
		if got := d.Cat(t, "text:1", "/text"); len(got) != size {
			t.Errorf("docker run text:1 cat /text: %d bytes, want %d", len(got), size)
		}
	})
	if len(notes) > 0 {
		t.Errorf("notes: %q", notes)
	}
}

// TestDockerFallback: an SSH user who may use docker's socket but not its containerd's
// gets complete images through the Docker API, and is told why once, naming the socket
// (docker 28's, where /info says).
func TestDockerFallback(t *testing.T) {
	e := newSSHEnv(t)
	for _, r := range testenv.Roots {
		t.Run(string(r.DockerContainerd), func(t *testing.T) {
			t.Parallel()
			dockerFallback(t, e, testenv.StartDockerFlavor(t, r.DockerContainerd))
		})
	}
}

func dockerFallback(t *testing.T, e *sshEnv, d *testenv.Docker) {
	sshd := e.ssh.Start(t, testenv.SSHDOptions{User: "ferrytest"})
	d.ShareSocket(t)
	sock := strings.TrimPrefix(d.Host, "unix://")
	dir := t.TempDir()
	base := writeBundle(t, dir, "base:1", testenv.BusyboxV1(t))
	app := writeBundle(t, dir, "app:1", testenv.BusyboxV1(t, map[string]string{"marker": "app 1\n"}))
	opts := e.opts
	opts.To = "docker"
	var notes []string
	opts.Note = func(msg string) { notes = append(notes, msg) }
	host := "ssh://ferrytest@" + sshd.Addr + sock
	res, err := e.send(t, []string{base, app}, opts, host)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Complete == "" || res[0].Skipped != 0 || strings.Contains(res[0].Store, "containerd") {
		t.Errorf("%+v, want complete images through the Docker API", res[0])
	}
	if len(notes) != 1 || !strings.HasPrefix(notes[0], host+": ") || !strings.Contains(notes[0], "keeps its images in containerd") ||
		!strings.Contains(notes[0], d.Containerd) || !strings.Contains(notes[0], "complete images") {
		t.Errorf("notes: %q, want one saying why", notes)
	}
	t.Logf("note: %s", notes)
	if got := d.Cat(t, "app:1", "/marker"); got != "app 1\n" {
		t.Errorf("cat /marker: %q", got)
	}

	// An image docker loaded itself from a legacy archive has a manifest, and an ID, of
	// docker's: the send finds it held whole by what the daemon says of it, and sends nothing.
	img := testenv.BusyboxV1(t, map[string]string{"marker": "own 1\n"})
	legacy := filepath.Join(dir, "own-legacy.tar")
	tag, err := name.NewTag("own:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(legacy, tag, img); err != nil {
		t.Fatal(err)
	}
	d.Run(t, "load", "-i", legacy)
	own := writeBundle(t, dir, "own:1", img)
	if id := strings.TrimSpace(d.Run(t, "image", "inspect", "-f", "{{.Id}}", "own:1")); id == mustDigest(t, img) {
		t.Fatalf("docker named the image %s, as ferry does: the case is not shown", id)
	}
	res, err = e.send(t, []string{own}, opts, host)
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Skipped != r.Layers || r.Sent != 0 {
		t.Errorf("sending an image docker loaded itself: %+v, want it held whole, nothing sent", r)
	}
}

// mustDigest is img's manifest digest.
func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/mem"
)

// The orchestration against the in-memory fake (package store/mem): no daemon, no sshd,
// seconds. The real stores run the same paths in the long tests.

// fakeImages are app:1 … app:n, each a base layer and a layer of its own, as a docker save
// gives them (uncompressed layers), in a source daemon.
func fakeSource(t *testing.T, n int, base, own int) *mem.Daemon {
	t.Helper()
	return fakeSourceOf(t, n, testenv.RandomData(base), func(i int) []byte { return testenv.RandomData(own + i) })
}

// fakeSourceOf is fakeSource with the base layer's data given, and the data of image i's own
// layer made by own(i).
func fakeSourceOf(t *testing.T, n int, base []byte, own func(int) []byte) *mem.Daemon {
	t.Helper()
	baseLayer := static.NewLayer(base, types.OCIUncompressedLayer)
	b := &archive.Bundle{}
	src := archive.V1Source{}
	for i := 1; i <= n; i++ {
		img, err := mutate.AppendLayers(empty.Image, baseLayer, static.NewLayer(own(i), types.OCIUncompressedLayer))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddImage(img, []string{fmt.Sprintf("app:%d", i)}, src); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := archive.Write(t.Context(), &buf, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d := mem.NewDaemon("source", false, true)
	if err := d.Seed(t.Context(), buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	return d
}

// fakeSend sends images from src to the stores named by host.
func fakeSend(ctx context.Context, src store.Store, images []string, hosts map[string]store.Store, opts SendOptions) ([]HostResult, error) {
	var names []string
	for name := range hosts {
		names = append(names, name)
	}
	opts.Store = src
	opts.Open = func(_ context.Context, name string) (store.Store, error) { return hosts[name], nil }
	if opts.Compress == (compress.Compression{}) {
		opts.Compress = compress.Compression{Codec: compress.Gzip, Mode: compress.Auto}
	}
	return Send(ctx, images, names, opts)
}

var apps = []string{"app:1", "app:2", "app:3"}

// TestFakeSteps: a daemon that keeps what each load brings gets the layers it lacks in
// steps, then the images; a cut keeps the steps loaded before it, and the next send sends
// only the rest, and removes the steps once the images are in.
func TestFakeSteps(t *testing.T) {
	src := fakeSource(t, 3, 3<<20, 1<<20)
	host := mem.NewDaemon("host", false, true)
	full, err := fakeSend(t.Context(), src, apps, map[string]store.Store{"h": host}, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := full[0]
	if got := host.Tags(); !equal(got, apps) || host.Steps() != 0 {
		t.Fatalf("host holds %v and %d steps", got, host.Steps())
	}
	if host.Loads() != 3 || r.Layers != 4 || r.Skipped != 0 || len(r.Loaded) != 3 {
		t.Errorf("%d loads, result %+v: want two steps and the images' load, 4 layers sent", host.Loads(), r)
	}

	// Cut in the images' load: the steps loaded stay, and only the rest goes again.
	again := mem.NewDaemon("again", false, true)
	again.SetFaults(mem.Faults{CutAfter: r.Sent * 9 / 10})
	if _, err := fakeSend(t.Context(), src, apps, map[string]store.Store{"h": again}, SendOptions{}); !errors.Is(err, mem.ErrCut) {
		t.Fatalf("cut send: %v", err)
	}
	steps := again.Steps() // a cut stops every load in flight: the last step may go too
	if steps < 1 || len(again.Tags()) != 0 {
		t.Fatalf("after the cut: %d steps, tags %v; want steps only", steps, again.Tags())
	}
	again.SetFaults(mem.Faults{})
	res, err := fakeSend(t.Context(), src, apps, map[string]store.Store{"h": again}, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equal(again.Tags(), apps) || again.Steps() != 0 || res[0].Skipped < 2 || res[0].Sent > r.Sent*2/3 {
		t.Errorf("resumed: tags %v, %d steps, %+v; want the layers of the steps loaded before the cut (%d) skipped (of %d bytes)",
			again.Tags(), again.Steps(), res[0], steps, r.Sent)
	}
}

// TestFakeResume: a store that keeps whole blobs and resumes a cut one is sent, the second
// time, only what it did not take in: across both sends each byte of the images crosses
// once.
func TestFakeResume(t *testing.T) {
	src := fakeSource(t, 2, 2<<20, 2<<20)
	whole := mem.New("whole")
	full, err := fakeSend(t.Context(), src, apps[:2], map[string]store.Store{"h": whole}, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host := mem.New("host")
	cut := full[0].Sent/2 + 12345 // mid-blob
	host.SetFaults(mem.Faults{CutAfter: cut})
	first, err := fakeSend(t.Context(), src, apps[:2], map[string]store.Store{"h": host}, SendOptions{})
	if !errors.Is(err, mem.ErrCut) {
		t.Fatalf("cut send: %v", err)
	}
	if first[0].Sent != cut {
		t.Errorf("cut send counted %d bytes, the store read %d", first[0].Sent, cut)
	}
	host.SetFaults(mem.Faults{})
	second, err := fakeSend(t.Context(), src, apps[:2], map[string]store.Store{"h": host}, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := first[0].Sent + second[0].Sent; got != full[0].Sent || !equal(host.Tags(), apps[:2]) {
		t.Errorf("sent %d + %d = %d, want %d (each byte once); host holds %v", first[0].Sent, second[0].Sent, got, full[0].Sent, host.Tags())
	}
}

// TestFakeFanOut: hosts that take complete images only get one stream as the source is read;
// one whose stream is cut fails alone and loads nothing, the others load everything.
func TestFakeFanOut(t *testing.T) {
	src := fakeSource(t, 3, 3<<20, 1<<20)
	hosts := map[string]store.Store{}
	for _, name := range []string{"a", "b", "c"} {
		hosts[name] = mem.NewDaemon(name, true, true)
	}
	hosts["b"].(*mem.Daemon).SetFaults(mem.Faults{CutAfter: 1 << 20})
	res, err := fakeSend(t.Context(), src, apps, hosts, SendOptions{})
	var se *SendError
	if !errors.As(err, &se) || len(se.Failed) != 1 || se.Failed[0].Host != "b" || !errors.Is(err, mem.ErrCut) {
		t.Fatalf("want host b failed alone, cut: %v", err)
	}
	for _, r := range res {
		d := hosts[r.Host].(*mem.Daemon)
		switch {
		case r.Host == "b" && len(d.Tags()) != 0:
			t.Errorf("the cut host loaded %v", d.Tags())
		case r.Host != "b" && (!equal(d.Tags(), apps) || d.Loads() != 1 || r.Complete == "" || r.Codec != compress.Zstd):
			t.Errorf("host %s: %v, %d loads, %+v; want one zstd stream of every image", r.Host, d.Tags(), d.Loads(), r)
		}
	}
}

// TestFakeCancel: cancelling a send mid-stream stops it at once with the cause, and a host
// that takes streams whole loads nothing.
func TestFakeCancel(t *testing.T) {
	src := fakeSource(t, 2, 4<<20, 4<<20)
	host := mem.NewDaemon("slow", true, false)
	host.SetFaults(mem.Faults{Rate: 4 << 20})
	ctx, cancel := context.WithCancelCause(t.Context())
	stop := errors.New("stopped by the test")
	var once sync.Once
	opts := SendOptions{Progress: func(_ string, sent, _ int64) {
		if sent > 1<<20 {
			once.Do(func() { cancel(stop) })
		}
	}}
	_, err := fakeSend(ctx, src, apps[:2], map[string]store.Store{"h": host}, opts)
	if !errors.Is(err, stop) && !strings.Contains(fmt.Sprint(err), stop.Error()) {
		t.Fatalf("cancelled send: %v", err)
	}
	if len(host.Tags()) != 0 {
		t.Errorf("host loaded %v", host.Tags())
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// TestFakePacked: a store that unpacks layers is sent the uncompressed layers of a docker
// save gzip-compressed, as they are read, and the manifests name the compressed blobs; a
// store that holds the base already is sent the rest only.
func TestFakePacked(t *testing.T) {
	src := fakeSource(t, 2, 2<<20, 1<<20)
	host := mem.NewUnpacker("node")
	res, err := fakeSend(t.Context(), src, apps[:1], map[string]store.Store{"h": host}, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srcLayers := src.Layers("app:1")
	got := host.Layers("app:1")
	if !equal(host.Tags(), apps[:1]) || len(got) != 2 || got[0] == srcLayers[0] || got[1] == srcLayers[1] {
		t.Fatalf("host holds %v with layers %v, want app:1 with its layers compressed (the source's are %v)", host.Tags(), got, srcLayers)
	}
	if res[0].Layers != 2 || res[0].Skipped != 0 {
		t.Errorf("first send %+v", res[0])
	}
	res, err = fakeSend(t.Context(), src, apps[:2], map[string]store.Store{"h": host}, SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; !equal(host.Tags(), apps[:2]) || r.Skipped < 1 || r.Sent > 2<<20 || host.Layers("app:2")[0] != got[0] {
		t.Errorf("second send %+v, host %v: want the base held (%s) and app:2's own layer sent", r, host.Layers("app:2"), got[0])
	}
}

// text returns n bytes of words drawn at random from a small vocabulary: data that a higher
// level compresses better.
func text(n, seed int) []byte {
	words := strings.Fields("layer image blob digest manifest config send host store link level part stream gzip zstd bundle pool delta chain step")
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(" \n"[rng.IntN(8)/7])
		if rng.IntN(50) == 0 {
			fmt.Fprintf(&b, "%x ", rng.Uint64())
		}
	}
	return b.Bytes()[:n]
}

// TestFakeLevel: a host's stream learns the level its link calls for: a host that takes the
// stream slowly gets it compressed harder, in fewer bytes, than the fastest level makes of it.
// (Several hosts share one spool compressed once, at one level.) The other way, a level down
// for a host that seldom waits, is compress's TestAdaptiveChoose: how often a fast host waits
// depends on what else the machine runs, and a test's figures must not.
func TestFakeLevel(t *testing.T) {
	src := fakeSourceOf(t, 1, text(24<<20, 1), func(i int) []byte { return text(24<<20, 1+i) })
	sent := map[string]int64{}
	for name, c := range map[string]struct {
		rate int64
		c    compress.Compression
	}{
		"slow":  {2 << 20, compress.Compression{Codec: compress.Zstd, Mode: compress.Follow}},
		"fixed": {0, compress.Compression{Codec: compress.Zstd, Level: compress.AdaptiveLevels(compress.Zstd)[0]}},
	} {
		host := mem.NewDaemon(name, false, true)
		host.SetFaults(mem.Faults{Rate: c.rate})
		opts := SendOptions{Compress: c.c}
		res, err := fakeSend(t.Context(), src, apps[:1], map[string]store.Store{name: host}, opts)
		if err != nil {
			t.Fatal(err)
		}
		sent[name] = res[0].Sent
	}
	t.Logf("48 MiB of text: %d bytes to the slow host, %d at the fastest level", sent["slow"], sent["fixed"])
	if sent["slow"] >= sent["fixed"] {
		t.Errorf("the slow host got %d bytes, the fastest level makes %d: want the slow link's compressed harder", sent["slow"], sent["fixed"])
	}
}

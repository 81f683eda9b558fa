package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer"
)

// A Target is one store in one place, with the means to look at it without ferry.
type Target struct {
	// Ref is the store's reference, as loads, inventories and sends name it.
	Ref string
	// LoadRef, if set, names the store for each load (a pool takes each bundle under a
	// name of its own).
	LoadRef func() string
	// Host is the SSH destination the store is on; "" for this machine. A store on a host
	// is also sent to.
	Host string
	// Options say how the host is reached.
	Options transfer.Options
	// Open, if set, opens the store on this machine in place of Ref (for kinds whose local
	// opening depends on the environment: docker, podman; and the fake).
	Open func(t *testing.T) store.Store
	// OpenHost, if set, opens the store on Host in place of dialing it over SSH: loads,
	// inventories and sends (transfer.SendOptions.Open) reach it through it. The fake is on
	// a host this way.
	OpenHost func(ctx context.Context, host string) (store.Store, error)
	// Completes says the store completes thin bundles although its inventory says it takes
	// complete images: docker on the containerd image store, through its containerd.
	Completes bool
	// State describes what the store holds, by the store's own tools: equal before and
	// after a refused or aborted load.
	State func(t *testing.T) string
	// Check proves that image tag, loaded, holds marker: it runs, or reads back with the
	// digests compared.
	Check func(t *testing.T, tag, marker string)
}

// inPlace opens the store when loads and inventories do not open it by reference; else it
// returns nil.
func (tg Target) inPlace(t *testing.T) store.Store {
	t.Helper()
	switch {
	case tg.Host == "" && tg.Open != nil:
		return tg.Open(t)
	case tg.Host != "" && tg.OpenHost != nil:
		st, err := tg.OpenHost(t.Context(), tg.Host)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	return nil
}

// load loads r into the store.
func (tg Target) load(t *testing.T, r io.Reader) (*transfer.LoadResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	lo := transfer.LoadOptions{Options: tg.Options, To: tg.Ref, Host: tg.Host}
	if tg.LoadRef != nil {
		lo.To = tg.LoadRef()
	}
	if lo.Store = tg.inPlace(t); lo.Store != nil {
		defer lo.Store.Close()
	}
	return transfer.Load(ctx, r, lo)
}

// loadFile loads the bundle file path into the store.
func (tg Target) loadFile(t *testing.T, path string) (*transfer.LoadResult, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return tg.load(t, f)
}

// inventory takes the store's inventory.
func (tg Target) inventory(t *testing.T) (*dedupe.Inventory, error) {
	t.Helper()
	if st := tg.inPlace(t); st != nil {
		defer st.Close()
		return st.Inventory(t.Context())
	}
	return transfer.Inventory(t.Context(), tg.Ref, tg.Host, tg.Options)
}

// send sends the bundle file path to the store on its host.
func (tg Target) send(path string) ([]transfer.HostResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return transfer.Send(ctx, []string{path}, []string{tg.Host}, transfer.SendOptions{
		Options:  tg.Options,
		To:       tg.Ref,
		Open:     tg.OpenHost,
		Compress: compress.Compression{Codec: compress.Gzip, Mode: compress.Follow},
	})
}

// unchanged fails t unless the store's state is before.
func (tg Target) unchanged(t *testing.T, what, before string) {
	t.Helper()
	if after := tg.State(t); after != before {
		t.Errorf("%s changed the store:\nbefore:\n%s\nafter:\n%s", what, before, after)
	}
}

// Run runs the suite against tg, whose store starts empty, loading imgs: a thin bundle is
// refused (and refused by a send, on a host); a stream cut halfway leaves the store as it
// was; a bundle loads and its image runs or reads back; the inventory names its layers; the
// delta of a second image loads onto the base, or, where the store takes complete images
// only, is refused; a cut stream still changes nothing; and, on a host, sending an image
// twice moves almost nothing the second time.
func Run(t *testing.T, imgs *Images, tg Target) {
	refuseThin := func(t *testing.T) {
		before := tg.State(t)
		_, err := tg.loadFile(t, imgs.Thin2)
		if err == nil {
			t.Fatal("a bundle leaving out a layer the store lacks was loaded")
		}
		if !errors.Is(err, archive.ErrMissingBlob) {
			t.Errorf("refusal %v does not match archive.ErrMissingBlob", err)
		}
		t.Logf("refused: %v", err)
		tg.unchanged(t, "a refused thin bundle", before)
	}
	abort := func(t *testing.T) {
		before := tg.State(t)
		data, err := os.ReadFile(imgs.App2)
		if err != nil {
			t.Fatal(err)
		}
		cut := errors.New("the medium broke")
		_, err = tg.load(t, io.MultiReader(bytes.NewReader(data[:len(data)/2]), &errReader{cut}))
		if !errors.Is(err, cut) {
			t.Errorf("a stream cut halfway: got %v, want the reader's error", err)
		}
		tg.unchanged(t, "a stream cut halfway", before)
	}
	refuseThinSend := func(t *testing.T) {
		before := tg.State(t)
		_, err := tg.send(imgs.Thin2)
		if !errors.Is(err, archive.ErrMissingBlob) {
			t.Fatalf("sending a bundle that leaves out a layer the store lacks: got %v, want archive.ErrMissingBlob", err)
		}
		tg.unchanged(t, "a refused thin bundle sent", before)
	}

	t.Run("thin bundle refused", refuseThin)
	if tg.Host != "" {
		t.Run("thin bundle refused by send", refuseThinSend)
	}
	t.Run("aborted stream", abort)
	t.Run("round trip", func(t *testing.T) {
		res, err := tg.loadFile(t, imgs.App1)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Images) != 1 || !strings.HasSuffix(res.Images[0].Ref, Repo+":1") {
			t.Errorf("loaded %+v", res.Images)
		}
		tg.Check(t, Repo+":1", "app 1\n")
	})
	var inv *dedupe.Inventory
	t.Run("inventory", func(t *testing.T) {
		var err error
		if inv, err = tg.inventory(t); err != nil {
			t.Fatal(err)
		}
		if inv.Complete {
			return // takes complete images only: nothing to say of layers
		}
		img := imgs.Bundles[imgs.App1].Images[0]
		for i, l := range img.Layers {
			if !inv.Has(img, i) {
				t.Errorf("the inventory after the load lacks layer %d (%s)", i, l.DiffID)
			}
		}
	})
	if inv != nil && inv.Complete && !tg.Completes {
		t.Run("thin bundle refused after the base", refuseThin)
	} else {
		t.Run("delta onto the base", func(t *testing.T) {
			if _, err := tg.loadFile(t, imgs.Thin2); err != nil {
				t.Fatal(err)
			}
			tg.Check(t, Repo+":2", "app 2\n")
		})
	}
	t.Run("aborted stream after loads", abort)
	if tg.Host == "" {
		return
	}
	t.Run("send twice", func(t *testing.T) {
		send := func() transfer.HostResult {
			res, err := tg.send(imgs.App3)
			if err != nil {
				t.Fatal(err)
			}
			return res[0]
		}
		first := send()
		tg.Check(t, Repo+":3", "app 3\n")
		if first.Sent < 1<<20 {
			t.Errorf("first send: %+v, want the new layer sent", first)
		}
		second := send()
		t.Logf("first send %d bytes (%d layers, %d skipped), second %d bytes (%d skipped)",
			first.Sent, first.Layers, first.Skipped, second.Sent, second.Skipped)
		if second.Sent > 64<<10 {
			t.Errorf("sending an image the store holds again: %+v, want almost nothing sent", second)
		}
		tg.Check(t, Repo+":3", "app 3\n")
	})
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

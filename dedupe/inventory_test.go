package dedupe

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/ferrytool/ferry/archive"
)

// TestInventoryHas checks what makes a layer present for each kind of store: a docker daemon
// keys layers by chain ID, an OCI store by blob digest, a registry by blob digest or diffID,
// a bundle's inventory needs blob and chain.
func TestInventoryHas(t *testing.T) {
	ti := newTestImages(t)
	b, _ := newBundle(t, tagged{"example.com/app:1", ti.app1})
	img := b.Images[0] // layers: the base, then its own
	ids, blobs := diffIDs(t, ti.app1), layerDigests(t, ti.app1)

	tests := []struct {
		name string
		fill func(*Inventory)
		// want[store] is Has for layers 0 and 1.
		want map[string][2]bool
	}{
		{
			name: "empty",
			fill: func(*Inventory) {},
			want: map[string][2]bool{StoreDocker: {false, false}, StoreOCI: {false, false}, StoreContainerd: {false, false}, StoreRegistry: {false, false}, StoreBundle: {false, false}},
		},
		{
			name: "the same image",
			fill: func(inv *Inventory) {
				if err := inv.AddV1Image(ti.app1); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string][2]bool{StoreDocker: {true, true}, StoreOCI: {true, true}, StoreContainerd: {true, true}, StoreRegistry: {true, true}, StoreBundle: {true, true}},
		},
		{
			name: "the base image",
			fill: func(inv *Inventory) {
				if err := inv.AddV1Image(ti.base); err != nil {
					t.Fatal(err)
				}
			},
			want: map[string][2]bool{StoreDocker: {true, false}, StoreOCI: {true, false}, StoreContainerd: {true, false}, StoreRegistry: {true, false}, StoreBundle: {true, false}},
		},
		{
			// docker has the layers but not these blobs: say, pulled compressed differently
			name: "same layers other blobs",
			fill: func(inv *Inventory) { inv.AddImage(ids, nil) },
			want: map[string][2]bool{StoreDocker: {true, true}, StoreOCI: {false, false}, StoreContainerd: {true, true}, StoreRegistry: {true, true}, StoreBundle: {false, false}},
		},
		{
			// the top blob alone is a different chain: a daemon does not have it on the base
			name: "top layer on no parent",
			fill: func(inv *Inventory) { inv.AddImage(ids[1:], blobs[1:]) },
			want: map[string][2]bool{StoreDocker: {false, false}, StoreOCI: {false, true}, StoreContainerd: {false, true}, StoreRegistry: {false, true}, StoreBundle: {false, false}},
		},
		{
			name: "blobs alone",
			fill: func(inv *Inventory) {
				for _, d := range blobs {
					inv.AddBlob(d)
				}
			},
			want: map[string][2]bool{StoreDocker: {false, false}, StoreOCI: {true, true}, StoreContainerd: {true, true}, StoreRegistry: {true, true}, StoreBundle: {false, false}},
		},
	}
	for _, tt := range tests {
		for _, store := range []string{StoreDocker, StoreOCI, StoreContainerd, StoreRegistry, StoreBundle} {
			t.Run(tt.name+"/"+store, func(t *testing.T) {
				inv := NewInventory(store)
				tt.fill(inv)
				got := [2]bool{inv.Has(img, 0), inv.Has(img, 1)}
				if got != tt.want[store] {
					t.Errorf("Has = %v, want %v", got, tt.want[store])
				}
			})
		}
	}
}

// TestInventoryThin checks that Thin leaves out exactly the layer blobs the store holds for
// every image using them, never a manifest or config, and leaves the original bundle whole.
func TestInventoryThin(t *testing.T) {
	ti := newTestImages(t)
	top, err := ti.app1.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// alone has app1's own layer as its only layer: the same blob, another chain.
	alone, err := mutate.AppendLayers(empty.Image, top[1])
	if err != nil {
		t.Fatal(err)
	}
	baseLayer := layerDigests(t, ti.base)[0]
	app1Layer, app2Layer := layerDigests(t, ti.app1)[1], layerDigests(t, ti.app2)[1]

	inventory := func(store string, imgs ...v1.Image) *Inventory {
		inv := NewInventory(store)
		for _, img := range imgs {
			if err := inv.AddV1Image(img); err != nil {
				t.Fatal(err)
			}
		}
		return inv
	}
	apps := []tagged{{"example.com/app:1", ti.app1}, {"example.com/app:2", ti.app2}}
	tests := []struct {
		name    string
		imgs    []tagged
		inv     *Inventory
		leftOut []v1.Hash
		nLayers int // layers the thin bundle carries
	}{
		{"nothing held", apps, NewInventory(StoreDocker), nil, 3},
		{"base held by docker", apps, inventory(StoreDocker, ti.base), []v1.Hash{baseLayer}, 2},
		{"base held by a layout", apps, inventory(StoreOCI, ti.base), []v1.Hash{baseLayer}, 2},
		{"one app held", apps, inventory(StoreBundle, ti.app1), []v1.Hash{baseLayer, app1Layer}, 1},
		{"everything held", apps, inventory(StoreOCI, ti.app1, ti.app2), []v1.Hash{baseLayer, app1Layer, app2Layer}, 0},
		// docker holds app1's layer on the base only: alone still needs its blob
		{"kept while one image needs it", []tagged{{"example.com/app:1", ti.app1}, {"example.com/alone:1", alone}},
			inventory(StoreDocker, ti.app1), []v1.Hash{baseLayer}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, src := newBundle(t, tt.imgs...)
			before := writeTar(t, b, src)
			thin := tt.inv.Thin(b)

			var leftOut []v1.Hash
			for _, blob := range thin.Blobs() {
				if blob.Missing {
					leftOut = append(leftOut, blob.Digest)
				}
			}
			if !sameHashes(leftOut, tt.leftOut) {
				t.Errorf("left out %v, want %v", leftOut, tt.leftOut)
			}
			for _, img := range thin.Images {
				if !img.Config.Present() || !img.Manifest.Present() {
					t.Errorf("image %v: the config or manifest was left out", img.RepoTags)
				}
			}
			for _, blob := range b.Blobs() {
				if blob.Missing {
					t.Errorf("Thin changed the original bundle: %s is missing there", blob.Digest)
				}
			}
			if again := writeTar(t, b, src); !bytes.Equal(before, again) {
				t.Error("the original bundle writes differently after Thin")
			}

			// The delta as written and read back carries what Thin kept, and no more.
			read, err := readInto(archive.Discard, writeTar(t, thin, src))
			if err != nil {
				t.Fatal(err)
			}
			carried := map[v1.Hash]bool{}
			var missing []v1.Hash
			for _, img := range read.Images {
				for _, l := range img.Layers {
					if l.Present() {
						carried[l.Digest] = true
					} else {
						missing = append(missing, l.Digest)
					}
				}
			}
			if len(carried) != tt.nLayers {
				t.Errorf("the delta carries %d layer blobs, want %d", len(carried), tt.nLayers)
			}
			if !sameHashes(missing, tt.leftOut) {
				t.Errorf("the delta read back lacks %v, want %v", missing, tt.leftOut)
			}
		})
	}
}

func compareHash(a, b v1.Hash) int { return strings.Compare(a.String(), b.String()) }

// sameHashes compares two lists of digests as sets.
func sameHashes(a, b []v1.Hash) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, compareHash)
	slices.SortFunc(b, compareHash)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func TestInventoryRoundTrip(t *testing.T) {
	ti := newTestImages(t)
	b, _ := newBundle(t, tagged{"example.com/app:1", ti.app1}, tagged{"example.com/app:2", ti.app2})
	for _, store := range []string{StoreDocker, StoreOCI, StoreContainerd, StoreRegistry, StoreBundle} {
		t.Run(store, func(t *testing.T) {
			inv := NewInventory(store)
			for _, img := range []v1.Image{ti.app1, ti.app2, ti.app1} { // app1 twice: no duplicates
				if err := inv.AddV1Image(img); err != nil {
					t.Fatal(err)
				}
			}
			if len(inv.DiffIDs) != 3 || len(inv.Chains) != 3 || len(inv.Blobs) != 3 {
				t.Fatalf("diffIDs %d, chains %d, blobs %d; want 3 of each (base and two apps)", len(inv.DiffIDs), len(inv.Chains), len(inv.Blobs))
			}
			for _, list := range [][]string{inv.DiffIDs, inv.Chains, inv.Blobs} {
				if !slices.IsSorted(list) {
					t.Errorf("not sorted: %v", list)
				}
			}
			var buf bytes.Buffer
			if err := inv.Write(&buf); err != nil {
				t.Fatal(err)
			}
			got, err := ReadInventory(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 1 || got.Store != store || !slices.Equal(got.Blobs, inv.Blobs) ||
				!slices.Equal(got.DiffIDs, inv.DiffIDs) || !slices.Equal(got.Chains, inv.Chains) {
				t.Fatalf("read back %+v, wrote %+v", got, inv)
			}
			for _, img := range b.Images {
				for i := range img.Layers {
					if got.Has(img, i) != inv.Has(img, i) {
						t.Errorf("image %v layer %d: Has differs after the round trip", img.RepoTags, i)
					}
				}
			}
			var again bytes.Buffer
			if err := got.Write(&again); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), again.Bytes()) {
				t.Errorf("written again differs:\n%s\n%s", buf.Bytes(), again.Bytes())
			}
		})
	}
}

func TestReadInventory(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"docker", `{"version":1,"store":"docker"}`, true},
		{"oci", `{"version":1,"store":"oci","blobs":["aa"]}`, true},
		{"bundle", `{"version":1,"store":"bundle"}`, true},
		{"future version", `{"version":2,"store":"docker"}`, false},
		{"no version", `{"store":"docker"}`, false},
		{"unknown store", `{"version":1,"store":"s3"}`, false},
		{"no store", `{"version":1}`, false},
		{"not JSON", `version: 1`, false},
		{"empty", ``, false},
		{"a list", `[]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ReadInventory(strings.NewReader(tt.in))
			if tt.ok && err != nil {
				t.Fatal(err)
			}
			if !tt.ok && err == nil {
				t.Fatalf("read %+v, want an error", inv)
			}
		})
	}
}

// TestBundleInventory checks the inventory of a bundle: everything it puts into a store, so
// the next bundle can be thinned against it (save --have bundle.tar).
func TestBundleInventory(t *testing.T) {
	ti := newTestImages(t)
	first, _ := newBundle(t, tagged{"example.com/app:1", ti.app1})
	inv := BundleInventory(first)
	if inv.Store != StoreBundle {
		t.Errorf("store %q, want %q", inv.Store, StoreBundle)
	}
	var want []string
	for _, blob := range first.Blobs() { // two layers, a config, a manifest
		want = append(want, blob.Digest.Hex)
	}
	if len(want) != 4 || !slices.Equal(inv.Blobs, want) {
		t.Errorf("blobs %v, want %v", inv.Blobs, want)
	}
	for i := range first.Images[0].Layers {
		if !inv.Has(first.Images[0], i) {
			t.Errorf("the bundle's inventory lacks its own layer %d", i)
		}
	}

	next, src := newBundle(t, tagged{"example.com/app:2", ti.app2})
	thin := inv.Thin(next)
	var leftOut []v1.Hash
	for _, blob := range thin.Blobs() {
		if blob.Missing {
			leftOut = append(leftOut, blob.Digest)
		}
	}
	if base := layerDigests(t, ti.base); !sameHashes(leftOut, base) {
		t.Errorf("thinned against the first bundle, the next leaves out %v, want the base %v", leftOut, base)
	}

	// A delta puts into the store what the whole bundle does: the store has the rest.
	var whole, delta bytes.Buffer
	if err := BundleInventory(next).Write(&whole); err != nil {
		t.Fatal(err)
	}
	if err := BundleInventory(thin).Write(&delta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole.Bytes(), delta.Bytes()) {
		t.Errorf("inventory of the delta differs from the whole bundle's:\n%s\n%s", delta.Bytes(), whole.Bytes())
	}

	// The same holds for a delta as read from its tar.
	read, err := archive.Read(context.Background(), bytes.NewReader(writeTar(t, thin, src)), archive.Discard, archive.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var fromTar bytes.Buffer
	if err := BundleInventory(read).Write(&fromTar); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole.Bytes(), fromTar.Bytes()) {
		t.Errorf("inventory of the delta read back differs from the whole bundle's:\n%s\n%s", fromTar.Bytes(), whole.Bytes())
	}
}

func TestHoldsWhole(t *testing.T) {
	cfg := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("c", 64)}
	man := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("m", 64)}
	img := &archive.Image{RepoTags: []string{"corpus/app:1"}, Config: &archive.Blob{Digest: cfg}, Manifest: &archive.Blob{Digest: man}}
	b := &archive.Bundle{Images: []*archive.Image{img}}
	for _, tt := range []struct {
		name    string
		digests []v1.Hash
		tags    []string
		want    bool
	}{
		{"config digest, docker's tag", []v1.Hash{cfg}, []string{"corpus/app:1"}, true},
		{"manifest digest (containerd store)", []v1.Hash{man}, []string{"corpus/app:1"}, true},
		{"docker.io spelled out", []v1.Hash{cfg}, []string{"docker.io/corpus/app:1"}, true},
		{"the localhost registry's", []v1.Hash{cfg, man}, []string{"localhost/corpus/app:1"}, false},
		{"other tag", []v1.Hash{cfg}, []string{"corpus/app:2"}, false},
		{"other image, same tag", []v1.Hash{{Algorithm: "sha256", Hex: strings.Repeat("d", 64)}}, []string{"corpus/app:1"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inv := NewInventory(StoreDocker)
			inv.AddNamed(tt.digests, tt.tags)
			if got := inv.HoldsWhole(img); got != tt.want {
				t.Errorf("HoldsWhole = %v, want %v", got, tt.want)
			}
			if got := inv.HoldsAll(b); got != tt.want {
				t.Errorf("HoldsAll = %v, want %v", got, tt.want)
			}
			var buf bytes.Buffer
			inv.Write(&buf)
			back, err := ReadInventory(&buf)
			if err != nil || back.HoldsWhole(img) != tt.want {
				t.Errorf("read back: HoldsWhole %v, %v", back.HoldsWhole(img), err)
			}
		})
	}
}

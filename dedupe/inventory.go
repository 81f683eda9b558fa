package dedupe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/internal/boundjson"
)

// Store kinds an inventory describes. They differ in what makes a layer present: a docker
// daemon keys layers by chain ID (the layer on top of its parents), OCI layouts and pools by
// blob digest (the layer exactly as stored, compressed or not). A containerd holds a layer
// either way: its blob in the content store, or unpacked in the snapshotter (where unpacking
// finds it by chain ID and skips it). A registry holds a layer by its blob, or by its diffID:
// a load into it names the blob it holds the layer in, however compressed. A bundle's
// inventory, whose destination is unknown, needs both blob and chain.
const (
	StoreDocker     = "docker"
	StoreOCI        = "oci"
	StoreContainerd = "containerd"
	StoreRegistry   = "registry"
	StoreBundle     = "bundle"
)

// An Inventory names what a store holds: its blobs, and its layers by diffID and chain ID.
// It is small enough to carry across an air gap (hex digests, sorted, no duplicates).
type Inventory struct {
	Version int      `json:"version"`
	Store   string   `json:"store"`
	Blobs   []string `json:"blobs,omitempty"`
	DiffIDs []string `json:"diffIDs,omitempty"`
	Chains  []string `json:"chains,omitempty"`
	// Complete says the store takes complete images only (docker on the containerd image
	// store, podman): a delta for it leaves out no layer.
	Complete bool `json:"complete,omitempty"`
	// Images are the images the store holds, by the digests that name them there and their
	// tags. A store that takes complete images only is not sent an image again that it holds
	// whole (HoldsWhole).
	Images []NamedImage `json:"images,omitempty"`
	// Content, if set, indexes the content of the store's layers, file by file (ferry
	// inventory --content): a content delta carries only what it lacks.
	Content *content.Index `json:"content,omitempty"`

	blobs, diffIDs, chains map[string]bool
}

// A NamedImage is an image a store has, by the digests and tags that name it there.
type NamedImage struct {
	// Digests name the image: its config digest (the image ID of docker's classic store and
	// of podman) and, where the store keeps it, its manifest digest (the image ID of docker's
	// containerd image store), as "sha256:…".
	Digests []string `json:"digests"`
	Tags    []string `json:"tags,omitempty"`
}

// AddNamed records an image the store has, named by digests and tagged tags.
func (inv *Inventory) AddNamed(digests []v1.Hash, tags []string) {
	h := NamedImage{Tags: slices.Clone(tags)}
	for _, d := range digests {
		h.Digests = append(h.Digests, d.String())
	}
	inv.Images = append(inv.Images, h)
}

// HoldsWhole reports whether the store holds img whole under every tag the bundle gives
// it: an image whose config or manifest digest, or key (archive.ImageKey), names an image of
// the store, tagged alike.
func (inv *Inventory) HoldsWhole(img *archive.Image) bool {
	names := []string{img.ID().String()}
	if img.Manifest != nil {
		names = append(names, img.Manifest.Digest.String())
	}
	if cfg := img.ConfigFile(); cfg != nil {
		names = append(names, archive.ImageKey(cfg).String())
	}
	for _, n := range inv.Images {
		if !slices.ContainsFunc(n.Digests, func(d string) bool { return slices.Contains(names, d) }) {
			continue
		}
		var tags []string
		for _, t := range n.Tags {
			tags = append(tags, familiarTag(t))
		}
		if !slices.ContainsFunc(img.RepoTags, func(t string) bool { return !slices.Contains(tags, familiarTag(t)) }) {
			return true
		}
	}
	return false
}

// HoldsAll reports whether the store holds every image of b whole (HoldsWhole).
func (inv *Inventory) HoldsAll(b *archive.Bundle) bool {
	return len(b.Images) > 0 && !slices.ContainsFunc(b.Images, func(img *archive.Image) bool { return !inv.HoldsWhole(img) })
}

// familiarTag is a store's tag in docker's familiar form (archive.Familiar), or the tag as
// it is when it does not parse.
func familiarTag(tag string) string {
	if t, err := name.NewTag(tag); err == nil {
		return archive.Familiar(t)
	}
	return tag
}

// NewInventory makes an inventory of a store of the given kind.
func NewInventory(store string) *Inventory {
	return &Inventory{Version: 1, Store: store}
}

// AddImage records an image's layers: blob digests (unless nil) with diffIDs and chains.
func (inv *Inventory) AddImage(diffIDs []v1.Hash, blobs []v1.Hash) {
	for _, d := range diffIDs {
		inv.DiffIDs = append(inv.DiffIDs, d.Hex)
	}
	for _, c := range archive.ChainIDs(diffIDs) {
		inv.Chains = append(inv.Chains, c.Hex)
	}
	for _, b := range blobs {
		inv.Blobs = append(inv.Blobs, b.Hex)
	}
	inv.index()
}

// AddV1Image records the layers of a go-containerregistry image.
func (inv *Inventory) AddV1Image(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	var blobs []v1.Hash
	for _, d := range m.Layers {
		blobs = append(blobs, d.Digest)
	}
	inv.AddImage(cfg.RootFS.DiffIDs, blobs)
	return nil
}

// AddIndex records the layers of every image an index reaches, nested indexes included.
func (inv *Inventory) AddIndex(idx v1.ImageIndex) error {
	return archive.EachImage(idx, inv.AddV1Image)
}

// Add records blobs the store holds, diffIDs of layers it holds (uncompressed digests of
// its blobs), and chain IDs of layers it holds unpacked.
func (inv *Inventory) Add(blobs, diffIDs, chains []v1.Hash) {
	for _, b := range blobs {
		inv.Blobs = append(inv.Blobs, b.Hex)
	}
	for _, d := range diffIDs {
		inv.DiffIDs = append(inv.DiffIDs, d.Hex)
	}
	for _, c := range chains {
		inv.Chains = append(inv.Chains, c.Hex)
	}
	inv.index()
}

// AddBlob records blobs the store holds.
func (inv *Inventory) AddBlob(ds ...v1.Hash) {
	for _, d := range ds {
		inv.Blobs = append(inv.Blobs, d.Hex)
	}
	inv.index()
}

// index sorts and dedupes the lists and rebuilds the lookup sets.
func (inv *Inventory) index() {
	inv.Blobs, inv.blobs = uniq(inv.Blobs)
	inv.DiffIDs, inv.diffIDs = uniq(inv.DiffIDs)
	inv.Chains, inv.chains = uniq(inv.Chains)
}

func uniq(list []string) ([]string, map[string]bool) {
	set := make(map[string]bool, len(list))
	out := list[:0]
	for _, s := range list {
		if !set[s] {
			set[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, set
}

// HasBlob reports whether the store holds a blob.
func (inv *Inventory) HasBlob(d v1.Hash) bool { return inv.blobs[d.Hex] }

// Has reports whether the store holds layer i of img as the bundle carries it, and can
// complete a bundle that leaves it out.
func (inv *Inventory) Has(img *archive.Image, i int) bool {
	return !inv.Complete && inv.HoldsLayer(img, i)
}

// HoldsLayer reports whether the store holds layer i of img as the bundle carries it,
// whether or not it can complete a bundle that leaves it out.
func (inv *Inventory) HoldsLayer(img *archive.Image, i int) bool {
	chain := inv.chains[archive.ChainIDs(img.DiffIDs()[:i+1])[i].Hex]
	blob := inv.blobs[img.Layers[i].Digest.Hex]
	switch inv.Store {
	case StoreDocker:
		return chain
	case StoreOCI:
		return blob
	case StoreContainerd:
		return chain || blob
	case StoreRegistry:
		return blob || inv.diffIDs[img.Layers[i].DiffID.Hex]
	}
	return chain && blob
}

// Lacks returns the diffIDs of the layers b leaves out that the store does not hold: a
// bundle the store cannot complete. A store that takes complete images only lacks every
// layer left out.
func (inv *Inventory) Lacks(b *archive.Bundle) []string {
	var lacking []string
	for _, img := range b.Images {
		for i, l := range img.Layers {
			if l.Missing && !inv.Has(img, i) && !slices.Contains(lacking, l.DiffID.String()) {
				lacking = append(lacking, l.DiffID.String())
			}
		}
	}
	return lacking
}

// Thin returns b without the layers the store holds, and without the blobs of the artifacts
// it holds (their manifests stay, as the images' do): the delta to send it.
func (inv *Inventory) Thin(b *archive.Bundle) *archive.Bundle {
	thin := b.Thin(inv.Has)
	imageBlobs := map[v1.Hash]bool{}
	for _, img := range b.Images {
		imageBlobs[img.Config.Digest] = true
		for _, l := range img.Layers {
			imageBlobs[l.Digest] = true
		}
	}
	held := map[v1.Hash]bool{}
	for _, a := range b.Artifacts {
		if inv.HoldsArtifact(a) {
			for _, blob := range a.Blobs {
				held[blob.Digest] = !imageBlobs[blob.Digest]
			}
		}
	}
	if len(held) == 0 {
		return thin
	}
	return thin.LeaveOut(func(blob *archive.Blob) bool { return held[blob.Digest] })
}

// HoldsArtifact reports whether the store holds an artifact whole, its manifest and blobs,
// and can complete a bundle that leaves its blobs out.
func (inv *Inventory) HoldsArtifact(a *archive.Artifact) bool {
	if inv.Complete || !inv.blobs[a.Manifest.Digest.Hex] {
		return false
	}
	for _, blob := range a.Blobs {
		if !inv.blobs[blob.Digest.Hex] {
			return false
		}
	}
	return true
}

// Write writes the inventory as JSON, its images in the order of their digests, whatever
// order the store listed them in: the same store gives the same bytes. The content index
// goes last, written as it is read from disk: it may be far bigger than the rest.
func (inv *Inventory) Write(w io.Writer) error {
	out := *inv
	out.Images = slices.Clone(inv.Images)
	for i := range out.Images {
		out.Images[i].Tags = slices.Sorted(slices.Values(out.Images[i].Tags))
	}
	slices.SortStableFunc(out.Images, func(a, b NamedImage) int { return slices.Compare(a.Digests, b.Digests) })
	out.Content = nil
	data, err := json.MarshalIndent(&out, "", " ")
	if err != nil {
		return err
	}
	if inv.Content == nil {
		_, err = w.Write(append(data, '\n'))
		return err
	}
	head := append(bytes.TrimSuffix(data, []byte("\n}")), ",\n \"content\": "...)
	if _, err := w.Write(head); err != nil {
		return err
	}
	if err := inv.Content.WriteJSON(w); err != nil {
		return err
	}
	_, err = io.WriteString(w, "\n}\n")
	return err
}

// ReadInventory reads an inventory written by Write.
func ReadInventory(r io.Reader) (*Inventory, error) {
	inv, err := readInventory(boundjson.NewDecoder(r, boundjson.MaxValue))
	if err != nil {
		return nil, fmt.Errorf("reading inventory: %w", err)
	}
	if inv.Version != 1 || !slices.Contains([]string{StoreDocker, StoreOCI, StoreContainerd, StoreRegistry, StoreBundle}, inv.Store) {
		return nil, fmt.Errorf("reading inventory: version %d of store %q is not one ferry knows", inv.Version, inv.Store)
	}
	inv.index()
	return inv, nil
}

// readInventory reads an inventory's fields, its content index as it goes.
func readInventory(dec *json.Decoder) (*Inventory, error) {
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.Join(err, fmt.Errorf("no JSON object"))
	}
	var x *content.Index
	fields := map[string]json.RawMessage{}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, err
		}
		if key == "content" {
			x = new(content.Index)
			err = x.ReadJSON(dec)
		} else {
			var v json.RawMessage
			err = dec.Decode(&v)
			fields[fmt.Sprint(key)] = v
		}
		if err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	var inv Inventory
	if err := json.Unmarshal(data, &inv); err != nil {
		return nil, err
	}
	inv.Content = x
	return &inv, nil
}

// BundleInventory is the inventory of what a bundle puts into a store.
func BundleInventory(b *archive.Bundle) *Inventory {
	inv := NewInventory(StoreBundle)
	for _, img := range b.Images {
		var blobs []v1.Hash
		for _, l := range img.Layers {
			blobs = append(blobs, l.Digest)
		}
		inv.AddImage(img.DiffIDs(), blobs)
	}
	var present []v1.Hash
	for _, blob := range b.Reachable() {
		if blob.Present() {
			present = append(present, blob.Digest)
		}
	}
	inv.AddBlob(present...)
	return inv
}

package content

import (
	"archive/tar"
	"bufio"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A content delta is a tar of these entries, in this order, then the blobs it carries whole
// (blobs/sha256/<hex>). Its manifest.json names a config it does not hold, so that docker load
// fails on it at once, naming it, before the daemon changes.
const (
	headerName  = archive.ContentDelta
	trapName    = "manifest.json"
	bundleName  = "bundle.tar"
	recipesName = "recipes.zst"
	packName    = "pack.zst"
	trapConfig  = "THIS-IS-A-FERRY-CONTENT-DELTA--load-it-with--ferry-load"
	version     = 1
)

// header is a content delta's first entry.
type header struct {
	Version int    `json:"version"`
	Note    string `json:"note"`
	// Base are the layers of the far store the recipes copy from (opBase's layer).
	Base []Layer `json:"base"`
	// Layers are the bundle's layers, each rebuilt from its recipe or carried whole.
	Layers []deltaLayer `json:"layers"`
	// Recipes and Pack are the uncompressed sizes of those entries.
	Recipes int64 `json:"recipes"`
	Pack    int64 `json:"pack"`
}

// A deltaLayer is a layer blob of the bundle: rebuilt from the recipe at Recipe (offset and
// length in the recipes), Size bytes hashing to DiffID, which is also its digest; or, Whole,
// carried as it is.
type deltaLayer struct {
	Digest v1.Hash  `json:"digest"`
	DiffID v1.Hash  `json:"diffID"`
	Size   int64    `json:"size"`
	Whole  bool     `json:"whole,omitempty"`
	Recipe [2]int64 `json:"recipe,omitzero"`
	// Held: the recipe copies the whole layer from the store, which holds it.
	Held bool `json:"held,omitempty"`
}

const note = "a ferry content delta: `ferry load -i FILE --to STORE` rebuilds its layers from what the store holds; docker load cannot read it"

// A Summary says what a content delta holds, or what rebuilding one took.
type Summary struct {
	// Layers is how many layers the delta gives: Rebuilt from content, of which Held were
	// copied whole from the store, and Whole carried as they are.
	Layers, Rebuilt, Held, Whole int
	// New is the bytes of content the store lacked (uncompressed), Pack their compressed
	// size, Recipes the compressed recipes', Blobs the layers carried whole.
	New, Pack, Recipes, Blobs int64
	// Base is how many of the store's layers the recipes read.
	Base int
}

// Add adds what another delta holds.
func (s *Summary) Add(o Summary) {
	s.Layers, s.Rebuilt, s.Held, s.Whole = s.Layers+o.Layers, s.Rebuilt+o.Rebuilt, s.Held+o.Held, s.Whole+o.Whole
	s.New, s.Pack, s.Recipes, s.Blobs = s.New+o.New, s.Pack+o.Pack, s.Recipes+o.Recipes, s.Blobs+o.Blobs
	s.Base += o.Base
}

// tarFile writes a tar entry of size bytes from r, the same way every time.
func tarFile(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	n, err := io.Copy(tw, bufio.NewReader(io.LimitReader(r, size)))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

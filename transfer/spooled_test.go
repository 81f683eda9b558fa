package transfer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// TestSpooledKnows: which layer a docker save entry is, known as it begins where its name or
// the layers under it tell, else once hashed.
func TestSpooledKnows(t *testing.T) {
	h := func(s string) v1.Hash {
		return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sha256.Sum256([]byte(s)))}
	}
	a, b, c, d, e := h("a"), h("b"), h("c"), h("d"), h("e")
	id := func(s string) string { return strings.Repeat(s, 64) }
	under := func(s string) *string { return &s }
	sink := &readingSink{Sink: archive.Discard}
	s := newSpooled(sink, [][]v1.Hash{{a, b, c, e}, {a, b, d}})
	sink.before = func(name string) { // a layer is told once the sink reads it, not before
		for _, blob := range s.blobs {
			if blob.Path == name {
				t.Errorf("%s: told before its first byte was read", name)
			}
		}
	}
	known := func(diffID v1.Hash) string {
		if blob := s.blobs[diffID]; blob != nil {
			return blob.Path
		}
		return ""
	}
	ctx := context.Background()
	entry := func(name string, on *string) archive.Entry { return archive.Entry{Name: name, Size: 1, Under: on} }
	steps := []struct {
		name   string
		entry  archive.Entry
		hashed v1.Hash // if set, the entry is then hashed to this
		want   map[v1.Hash]string
	}{
		{"a layer on one not yet known: unknown", entry(id("2")+"/layer.tar", under(id("1"))), v1.Hash{},
			map[v1.Hash]string{b: ""}},
		{"a layer on none: the images' first", entry(id("1")+"/layer.tar", under("")), v1.Hash{},
			map[v1.Hash]string{a: id("1") + "/layer.tar"}},
		{"a layer on a known one: the next, where the images agree", entry(id("2")+"/layer.tar", under(id("1"))), v1.Hash{},
			map[v1.Hash]string{b: id("2") + "/layer.tar"}},
		{"a layer where the images go on differently: unknown until hashed", entry(id("3")+"/layer.tar", under(id("2"))), c,
			map[v1.Hash]string{c: id("3") + "/layer.tar", d: ""}},
		{"a layer on one known once hashed", entry(id("5")+"/layer.tar", under(id("3"))), v1.Hash{},
			map[v1.Hash]string{e: id("5") + "/layer.tar"}},
		{"a layer with no json before it: unknown", entry(id("4")+"/layer.tar", nil), v1.Hash{},
			map[v1.Hash]string{d: ""}},
		{"docker 25's name: a layer the images carry", entry("blobs/sha256/"+c.Hex, nil), v1.Hash{},
			map[v1.Hash]string{c: "blobs/sha256/" + c.Hex}},
		{"docker 25's name: a blob the images do not carry as a layer", entry("blobs/sha256/"+h("config").Hex, nil), v1.Hash{},
			map[v1.Hash]string{h("config"): ""}},
		{"hashed, unknown before: known now", entry(id("4")+"/layer.tar", nil), d,
			map[v1.Hash]string{d: id("4") + "/layer.tar"}},
	}
	for _, step := range steps {
		if err := s.Entry(ctx, step.entry, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		if step.hashed != (v1.Hash{}) {
			s.Hashed(step.entry, step.hashed, step.hashed)
		}
		for diffID, want := range step.want {
			if got := known(diffID); got != want {
				t.Errorf("%s: layer %.12s is %q, want %q", step.name, diffID.Hex, got, want)
			}
		}
	}
}

// readingSink reads each entry whole, calling before first.
type readingSink struct {
	archive.Sink
	before func(name string)
}

func (r *readingSink) Entry(_ context.Context, e archive.Entry, body io.Reader) error {
	r.before(e.Name)
	_, err := io.Copy(io.Discard, body)
	return err
}

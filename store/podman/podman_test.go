package podman

import (
	"context"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// TestInventoryNames: podman names a short name it loads localhost/NAME, so an image it
// holds under that name is held whole for a bundle that tags it NAME or localhost/NAME.
func TestInventoryNames(t *testing.T) {
	cfg := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("c", 64)}
	s := &Store{name: "podman", run: func(context.Context, string, io.Reader) (string, error) {
		return `[{"Id":"` + cfg.Hex + `","Names":["localhost/corpus/app:1","docker.io/library/base:2"]}]`, nil
	}}
	inv, err := s.Inventory(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for tag, want := range map[string]bool{
		"corpus/app:1": true, "localhost/corpus/app:1": true, "base:2": true, "docker.io/library/base:2": true,
		"corpus/app:2": false, "localhost/base:2": false,
	} {
		img := &archive.Image{RepoTags: []string{tag}, Config: &archive.Blob{Digest: cfg}}
		if got := inv.HoldsWhole(img); got != want {
			t.Errorf("HoldsWhole of an image tagged %s: %v, want %v", tag, got, want)
		}
	}
}

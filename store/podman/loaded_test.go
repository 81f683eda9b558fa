package podman

import (
	"strings"
	"testing"
)

// TestLoaded: the references podman load prints are read from either form of its line; one
// that is no reference, escapes and all, is quoted, so nothing the host printed reaches a
// terminal raw.
func TestLoaded(t *testing.T) {
	out := "Getting image source signatures\nLoaded image: localhost/app:1\nLoaded image(s): app:2, \x1b[31mapp:3\n"
	got := loaded(out)
	if len(got) != 3 || got[0] != "localhost/app:1" || got[1] != "app:2" || got[2] != `"\x1b[31mapp:3"` {
		t.Errorf("loaded %q", got)
	}
	if strings.ContainsRune(strings.Join(got, ""), 0x1b) {
		t.Error("an escape got through")
	}
}

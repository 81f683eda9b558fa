package mem_test

import (
	"context"
	"fmt"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/mem"
	"github.com/ferrytool/ferry/store/storetest"
)

// A fake is a store of package mem.
type fake interface {
	store.Store
	Tags() []string
	Steps() int
	Loads() int
	ID(tag string) (v1.Hash, bool)
	Cat(tag, path string) (string, error)
}

// TestConformance runs the store conformance suite against the fake, as each kind it
// stands for: a store of blobs (New), docker on its classic store (NewDaemon) and docker
// taking complete images only; each on this machine and on a host, reached through
// transfer.SendOptions.Open in place of an sshd. No binary runs: it is a short test.
func TestConformance(t *testing.T) {
	imgs := storetest.MemImages(t)
	for _, k := range []struct {
		name, ref string
		new       func() fake
	}{
		{"blobs", "oci:mem", func() fake { return mem.New("mem") }},
		{"daemon", "docker", func() fake { return mem.NewDaemon("mem", false, true) }},
		{"daemon-complete", "docker", func() fake { return mem.NewDaemon("mem", true, true) }},
	} {
		t.Run(k.name, func(t *testing.T) {
			for _, place := range []string{"local", "host"} {
				t.Run(place, func(t *testing.T) {
					st := k.new()
					tg := storetest.Target{
						Ref:  k.ref,
						Open: func(*testing.T) store.Store { return st },
						State: func(*testing.T) string {
							return fmt.Sprintf("tags %v, %d steps, %d loads", st.Tags(), st.Steps(), st.Loads())
						},
						// The image is there under its ID, and reads as a container of it
						// would, every layer held.
						Check: func(t *testing.T, tag, marker string) {
							if id, ok := st.ID(tag); !ok || id.String() != imgs.IDs[tag] {
								t.Errorf("%s holds %s as %v (%t), want %s", st, tag, id, ok, imgs.IDs[tag])
							}
							if got, err := st.Cat(tag, "/marker"); err != nil || got != marker {
								t.Errorf("%s: /marker holds %q (%v), want %q", tag, got, err, marker)
							}
						},
					}
					if place == "host" {
						tg.Host = "fake-host"
						tg.OpenHost = func(context.Context, string) (store.Store, error) { return st, nil }
					}
					storetest.Run(t, imgs, tg)
				})
			}
		})
	}
}

package transfer

import (
	"errors"
	"testing"

	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/mem"
)

// TestFakeLyingLoad: a load is believed only when the store then lists what it loaded: a
// daemon that reports loading the images and keeps nothing fails, alone, whether it takes
// the stream as it is read or in steps; the other hosts get the images.
func TestFakeLyingLoad(t *testing.T) {
	src := fakeSource(t, 2, 1<<20, 256<<10)
	hosts := map[string]store.Store{}
	for _, name := range []string{"honest", "liar", "cold-liar", "cold"} {
		d := mem.NewDaemon(name, name == "cold" || name == "cold-liar", true)
		d.SetFaults(mem.Faults{Forget: name == "liar" || name == "cold-liar"})
		hosts[name] = d
	}
	res, err := fakeSend(t.Context(), src, apps[:2], hosts, SendOptions{})
	var se *SendError
	if !errors.As(err, &se) || len(se.Failed) != 2 || !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("want the two liars failed, not loaded: %v", err)
	}
	for _, r := range res {
		liar := r.Host == "liar" || r.Host == "cold-liar"
		if liar != (r.Err != nil) || !liar && !equal(hosts[r.Host].(*mem.Daemon).Tags(), apps[:2]) {
			t.Errorf("host %s: %+v", r.Host, r)
		}
	}
}

package transfer

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/mem"
)

// counted is a host's daemon that counts the hosts open at once: from the store's opening
// to its closing, the host is being sent to.
type counted struct {
	*mem.Daemon
	c *concurrency
}

func (c counted) Close() error { c.c.add(-1); return nil }

type concurrency struct {
	mu          sync.Mutex
	active, max int
}

func (c *concurrency) add(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active += n
	c.max = max(c.max, c.active)
}

// TestFakeJobs: --jobs bounds the hosts sent to at once, and the hosts that wait their turn
// get the images from the spool of the one read (the first hosts, which take complete images
// only, take the source as it is read), so every host gets every image.
func TestFakeJobs(t *testing.T) {
	src := fakeSource(t, 2, 1<<20, 256<<10)
	const hosts, jobs = 12, 3
	var c concurrency
	daemons := map[string]*mem.Daemon{}
	var names []string
	for i := range hosts {
		name := fmt.Sprintf("h%02d", i)
		names = append(names, name)
		daemons[name] = mem.NewDaemon(name, i%4 != 3, true) // most take complete images only, the first three too
		daemons[name].SetFaults(mem.Faults{Rate: 8 << 20})
	}
	opts := SendOptions{Store: src, Jobs: jobs, Open: func(_ context.Context, name string) (store.Store, error) {
		c.add(1)
		return counted{daemons[name], &c}, nil
	}}
	res, err := Send(t.Context(), apps[:2], names, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.max > jobs || c.active != 0 {
		t.Errorf("%d hosts were sent to at once (%d still open), want at most %d", c.max, c.active, jobs)
	}
	for _, r := range res {
		if got := daemons[r.Host].Tags(); !equal(got, apps[:2]) {
			t.Errorf("host %s holds %v, want %v (%+v)", r.Host, got, apps[:2], r)
		}
	}
	if _, err := Send(t.Context(), apps[:1], names, SendOptions{Store: src, Jobs: -1, Open: opts.Open}); err == nil {
		t.Error("--jobs -1 was taken")
	}
}

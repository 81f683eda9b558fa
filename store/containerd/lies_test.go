package containerd_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/internal/fakecontainerd"
	"github.com/ferrytool/ferry/store/storetest"
	"github.com/ferrytool/ferry/transfer"
)

// TestLyingContainerd: a containerd on a host whose content store lists blobs without end is
// refused once the listing passes what ferry takes stock of; one that answers nothing ends
// at the deadline, naming the call it waited for. Both reached as ferry reaches containerd:
// its socket forwarded by a real sshd.
func TestLyingContainerd(t *testing.T) {
	ssh := storetest.NewSSH(t)
	host := ssh.Host(t)
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		endless bool
		check   func(error) bool
	}{
		{"endless listing", true, func(err error) bool { return strings.Contains(err.Error(), "lists over 200000 blobs") }},
		{"silence", false, func(err error) bool {
			return strings.Contains(err.Error(), "containerd made no progress on /containerd.services.content.v1.Content/List")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".sock")
			fakecontainerd.Start(t, socket, tt.endless)
			opts := ssh.Options
			opts.Stall = 2 * time.Second
			st, done, err := transfer.OpenStore(t.Context(), "containerd", "ssh://"+host+socket, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			if _, err := st.Inventory(t.Context()); err == nil || !tt.check(err) {
				t.Errorf("inventory: %v", err)
			}
		})
	}
}

package dedupe

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/internal/testenv"
)

func TestLockFile(t *testing.T) {
	defer func(h, s time.Duration) { heartbeat, staleLock = h, s }(heartbeat, staleLock)
	heartbeat, staleLock = 100*time.Millisecond, time.Second
	fsys := LocalFS{}
	lock := filepath.Join(t.TempDir(), lockName)

	t.Run("a live holder is waited for, and named", func(t *testing.T) {
		unlock, err := takeLock(context.Background(), fsys, lock, nil)
		if err != nil {
			t.Fatal(err)
		}
		var told string
		got := make(chan error, 1)
		go func() {
			unlock2, err := takeLock(context.Background(), fsys, lock, func(msg string) { told = msg })
			if err == nil {
				unlock2()
			}
			got <- err
		}()
		// the holder's heartbeat keeps the lock fresh well past staleLock
		select {
		case err := <-got:
			t.Fatalf("the lock was taken from a live holder: %v", err)
		case <-time.After(3 * staleLock):
		}
		unlock()
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(told, fmt.Sprintf("ferry %d", os.Getpid())) {
			t.Errorf("waiting was told %q, want the holder named", told)
		}
		if _, err := os.Stat(lock); !os.IsNotExist(err) {
			t.Errorf("the lock is still there after unlock: %v", err)
		}
	})

	t.Run("a holder of this machine that is gone", func(t *testing.T) {
		os.WriteFile(lock, fmt.Appendf(nil, "ferry %d %s\n", testenv.GonePID(t), machineID()), 0o644)
		start := time.Now()
		unlock, err := takeLock(context.Background(), fsys, lock, nil)
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		if d := time.Since(start); d > staleLock/2 {
			t.Errorf("took %s to take over a dead holder's lock", d)
		}
	})

	t.Run("another machine's lock that stopped changing", func(t *testing.T) {
		os.WriteFile(lock, []byte("ferry 1 another-machine\n"), 0o644)
		start := time.Now()
		unlock, err := takeLock(context.Background(), fsys, lock, nil)
		if err != nil {
			t.Fatal(err)
		}
		unlock()
		if d := time.Since(start); d < staleLock {
			t.Errorf("took over a foreign lock after %s, before it was stale", d)
		}
	})

	t.Run("cancelled while waiting", func(t *testing.T) {
		os.WriteFile(lock, []byte("ferry 1 another-machine\n"), 0o644)
		defer os.Remove(lock)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if _, err := takeLock(ctx, fsys, lock, nil); err == nil {
			t.Fatal("took the lock after the context ended")
		}
	})

	t.Run("something else in the lock's place", func(t *testing.T) {
		os.Mkdir(lock, 0o755)
		defer os.Remove(lock)
		if _, err := takeLock(context.Background(), fsys, lock, nil); err == nil || !strings.Contains(err.Error(), "locking") {
			t.Fatalf("got %v, want a locking error", err)
		}
	})
}

package dedupe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Lock files exclude the writers of one layout wherever they run: a ferry on the layout's
// machine and a ferry sending to it over SFTP take the same files the same way. A lock file
// is created exclusively (O_EXCL, or SFTP's EXCL flag), says who holds it (a process on a
// machine), and is touched every heartbeat while held. A waiter takes a lock over when its
// holder is a process of the waiter's own machine that is gone, or when the lock has not
// changed for staleLock (a cut connection's, or a killed process's on another machine):
// observed, not compared with a clock, since the two machines' clocks may differ.
var (
	heartbeat = 2 * time.Second
	staleLock = 15 * time.Second // variables for the tests
)

// machineID tells this machine's processes apart from others': the kernel's boot ID, which
// also changes when the machine restarts and every holder is gone.
var machineID = sync.OnceValue(func() string {
	id, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(id))
})

// holder is the content of a lock file.
func holder() string {
	return fmt.Sprintf("ferry %d %s\n", os.Getpid(), machineID())
}

// gone reports whether a lock's holder is known to be dead: a process of this machine that
// no longer runs.
func gone(content []byte) bool {
	f := strings.Fields(string(content))
	if len(f) != 3 || f[0] != "ferry" || machineID() == "" || f[2] != machineID() {
		return false
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func readSmall(fsys FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 4096))
}

// takeLock creates the lock file name, waiting while a live holder has it. waiting, if set,
// is told once why it waits.
func takeLock(ctx context.Context, fsys FS, name string, waiting func(string)) (unlock func(), err error) {
	var seen fs.FileInfo // the lock as first seen, and since when it has not changed
	var since time.Time
	told, retried := false, false
	for {
		_, err := fsys.Create(name, strings.NewReader(holder()))
		if err == nil {
			return keepAlive(fsys, name), nil
		}
		// SFTP servers report an existing file as a plain failure: look.
		fi, serr := fsys.Stat(name)
		switch {
		case errors.Is(serr, fs.ErrNotExist) && !retried:
			retried = true // released meanwhile, maybe
			continue
		case serr != nil || !fi.Mode().IsRegular(): // no lock in the way: creating itself fails
			return nil, fmt.Errorf("locking %s: %w", name, err)
		case seen == nil || !fi.ModTime().Equal(seen.ModTime()) || fi.Size() != seen.Size():
			seen, since = fi, time.Now()
		}
		content, _ := readSmall(fsys, name)
		if gone(content) || time.Since(since) > staleLock {
			if err := fsys.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("removing the stale lock %s: %w", name, err)
			}
			seen = nil
			continue
		}
		if waiting != nil && !told {
			told = true
			waiting(fmt.Sprintf("waiting for the lock %s, held by %s (taken over if it does not change for %s)",
				name, strings.TrimSpace(string(bytes.ToValidUTF8(content, nil))), staleLock))
		}
		retried = false
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// keepAlive touches the lock every heartbeat until unlock removes it.
func keepAlive(fsys FS, name string) (unlock func()) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fsys.Touch(name)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			fsys.Remove(name)
		})
	}
}

// stale reports whether a lock file left in place (a stage's) belongs to no live holder: its
// holder is gone, or it has not been touched for staleAge by the clock of the machine that
// looks (a stage's lock is touched every heartbeat, so an hour is far beyond any skew).
func stale(fsys FS, name string, fi fs.FileInfo) bool {
	content, err := readSmall(fsys, name)
	return err == nil && (gone(content) || time.Since(fi.ModTime()) > staleAge)
}

const staleAge = time.Hour

// Package leftover names the temporary files and directories ferry makes after the process
// that makes them, so that a later run can tell what a killed run left from what a live run
// is writing, and remove only the former.
package leftover

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Pattern is an os.CreateTemp or os.MkdirTemp pattern for a temporary file of this
// process: prefix, the process ID, then the random part.
func Pattern(prefix string) string { return fmt.Sprintf("%s%d-*", prefix, os.Getpid()) }

// Unlinked makes a temporary file whose name is removed at once: it is gone with its
// descriptor, whatever becomes of the process (what a killed run left between making and
// removing one is cleaned first).
func Unlinked(prefix string) (*os.File, error) {
	Clean("", prefix)
	f, err := os.CreateTemp("", Pattern(prefix))
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// Clean removes the entries of dir (the system's temp dir when "") that Pattern(prefix)
// named for a process that is gone: one that no longer runs, or ran before the machine
// last started. Errors are ignored: a leftover that cannot be removed stays a leftover.
func Clean(dir, prefix string) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pid, _, ok := strings.Cut(rest, "-")
		if !ok || !gone(pid, e) {
			continue
		}
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func gone(pid string, e os.DirEntry) bool {
	n, err := strconv.Atoi(pid)
	if err != nil || n <= 0 {
		return false
	}
	if n != os.Getpid() && errors.Is(syscall.Kill(n, 0), syscall.ESRCH) {
		return true
	}
	info, err := e.Info()
	return err == nil && info.ModTime().Before(bootTime())
}

// bootTime is when the machine started (btime in /proc/stat), or the zero time.
var bootTime = sync.OnceValue(func() time.Time {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "btime "); ok {
			if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(secs, 0)
			}
		}
	}
	return time.Time{}
})

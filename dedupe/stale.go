package dedupe

import (
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// LiveSince returns when the oldest live stage started, if one lives: gc keeps the blobs
// written since, which a live stage may have put in place before its commit names them.
func (l *Layout) LiveSince() (time.Time, bool) {
	var oldest time.Time
	live := false
	l.stages(func(name string, fi fs.FileInfo, isStale bool) {
		if isStale {
			return
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(name, stagePrefix), "-")
		if ns, err := strconv.ParseInt(id, 36, 64); err == nil {
			if t := time.Unix(0, ns); !live || t.Before(oldest) {
				oldest, live = t, true
			}
		}
	})
	return oldest.Add(-time.Minute), live // a minute for the clocks of other machines
}

// stages calls fn for each stage lock file in the layout.
func (l *Layout) stages(fn func(name string, fi fs.FileInfo, stale bool)) {
	entries, _ := l.FS.ReadDir(l.Dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), stagePrefix) {
			fn(e.Name(), e, stale(l.FS, l.path(e.Name()), e))
		}
	}
}

// removeStale removes what stages of killed processes and cut connections left: their lock
// files and temporary files. Call it under Lock.
func (l *Layout) removeStale() error {
	// The temporary files first, then the stages: a stage takes its lock file before it makes
	// any, so one that starts in between has made none of those listed.
	type temp struct {
		dir string
		e   fs.FileInfo
	}
	var temps []temp
	for _, dir := range []string{l.Dir, l.blobDir()} {
		entries, _ := l.FS.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tempPrefix) {
				temps = append(temps, temp{dir, e})
			}
		}
	}
	live := map[string]bool{}
	l.stages(func(name string, fi fs.FileInfo, isStale bool) {
		id := strings.TrimPrefix(name, stagePrefix)
		if isStale {
			l.FS.Remove(l.path(name))
		} else {
			live[id] = true
		}
	})
	for _, t := range temps {
		rest := strings.TrimPrefix(t.e.Name(), tempPrefix)
		i := strings.LastIndexByte(rest, '-')
		if i > 0 && live[rest[:i]] {
			continue
		}
		// A dead stage's; in blobs/, one of a holder of the lock, which we now are (gc
		// --recompress, killed); elsewhere an old orphan (a layout's first files are put
		// without the lock).
		if i > 0 || t.dir == l.blobDir() || time.Since(t.e.ModTime()) > staleAge {
			l.FS.Remove(l.FS.Join(t.dir, t.e.Name()))
		}
	}
	return nil
}

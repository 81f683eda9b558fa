package leftover

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrytool/ferry/internal/testenv"
)

func TestClean(t *testing.T) {
	dir := t.TempDir()
	dead, live := testenv.GonePID(t), testenv.LivePID(t)
	mk := func(name string, isDir bool) string {
		p := filepath.Join(dir, name)
		if isDir {
			os.MkdirAll(filepath.Join(p, "sub"), 0o755)
		} else {
			os.WriteFile(p, []byte("x"), 0o644)
		}
		return p
	}
	gone := []string{
		mk(fmt.Sprintf("ferry-spool-%d-123", dead), true),
		mk(fmt.Sprintf(".app.tar.tmp-%d-456", dead), false),
	}
	old := mk(fmt.Sprintf("ferry-spool-%d-789", live), false) // made before the boot
	os.Chtimes(old, time.Unix(1, 0), time.Unix(1, 0))
	gone = append(gone, old)
	kept := []string{
		mk(fmt.Sprintf("ferry-spool-%d-1", live), true),
		mk(fmt.Sprintf("ferry-spool-%d-2", os.Getpid()), true),
		mk("ferry-spool-notapid", true),
		mk(fmt.Sprintf("other-%d-3", dead), false),
	}
	Clean(dir, "ferry-spool-")
	Clean(dir, ".app.tar.tmp-")
	for _, p := range gone {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there", filepath.Base(p))
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", filepath.Base(p), err)
		}
	}
}

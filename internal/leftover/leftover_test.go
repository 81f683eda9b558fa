package leftover

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestClean(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer live.Process.Kill()
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
		mk(fmt.Sprintf("ferry-spool-%d-123", dead.Process.Pid), true),
		mk(fmt.Sprintf(".app.tar.tmp-%d-456", dead.Process.Pid), false),
	}
	old := mk(fmt.Sprintf("ferry-spool-%d-789", live.Process.Pid), false) // made before the boot
	os.Chtimes(old, time.Unix(1, 0), time.Unix(1, 0))
	gone = append(gone, old)
	kept := []string{
		mk(fmt.Sprintf("ferry-spool-%d-1", live.Process.Pid), true),
		mk(fmt.Sprintf("ferry-spool-%d-2", os.Getpid()), true),
		mk("ferry-spool-notapid", true),
		mk(fmt.Sprintf("other-%d-3", dead.Process.Pid), false),
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

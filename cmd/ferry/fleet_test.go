package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/transfer"
)

// TestHostList: -H @FILE reads one host a line, skipping blank lines and comments, mixes with
// -H HOST, and sends to a host named twice once; a file that cannot be read, or a line that
// is not one printable host, is a usage error naming the file and the line.
func TestHostList(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hosts")
	os.WriteFile(file, []byte("# nodes\nnode1\n\n  node2  \nweb1\n# end\n"), 0o644)
	got, err := hostList([]string{"web1", "@" + file, "node3", "node1"})
	if err != nil || strings.Join(got, " ") != "web1 node1 node2 node3" {
		t.Fatalf("hosts %q, %v", got, err)
	}
	for name, content := range map[string]string{"space": "node1\nnode 2\n", "escape": "node\x1b[2J\n", "nested": "@other\n"} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o644)
		_, err := hostList([]string{"@" + path})
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), path+":") || strings.Contains(err.Error(), "\x1b") {
			t.Errorf("%s: %v, want a usage error naming the line, quoted", name, err)
		}
	}
	for _, flags := range [][]string{nil, {"@" + filepath.Join(dir, "missing")}, {"@" + filepath.Join(dir, "empty")}} {
		os.WriteFile(filepath.Join(dir, "empty"), []byte("# none\n"), 0o644)
		var usage usageError
		if _, err := hostList(flags); !errors.As(err, &usage) {
			t.Errorf("%q: %v, want a usage error", flags, err)
		}
	}
}

// TestWriteFailedHosts: the file --hosts-failed writes names the failed hosts, and -H @FILE
// reads back exactly those.
func TestWriteFailedHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "failed")
	results := []transfer.HostResult{{Host: "a"}, {Host: "root@b:2222", Err: errors.New("down")}, {Host: "c"}, {Host: "ssh://d/run/docker.sock", Err: errors.New("x")}}
	if err := writeFailedHosts(path, results); err != nil {
		t.Fatal(err)
	}
	got, err := hostList([]string{"@" + path})
	if err != nil || strings.Join(got, " ") != "root@b:2222 ssh://d/run/docker.sock" {
		t.Errorf("read back %q, %v", got, err)
	}
}

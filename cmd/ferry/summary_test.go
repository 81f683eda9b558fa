package main

import (
	"strings"
	"testing"

	"github.com/ferrytool/ferry/transfer"
)

// TestSendSummary: layers sent are those whose bytes moved; the layers a host held are
// said apart.
func TestSendSummary(t *testing.T) {
	var out strings.Builder
	printSendSummary(&out, []transfer.HostResult{
		{Host: "web1", Sent: 2 << 20, Full: 3 << 20, Layers: 2, Skipped: 1, Loaded: []string{"app:2"}},
		{Host: "node1", Full: 3 << 20, Layers: 4, Held: 4, Loaded: []string{"app:1"}},
	})
	var lines []string // the table, each run of spaces one
	for _, l := range strings.Split(out.String(), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	for i, want := range []string{
		"web1 2.1 MB 3.1 MB 1 of 2 loaded app:2",
		"node1 0 B 3.1 MB 0 of 4 loaded app:1; 4 layers held already, unpacked",
	} {
		if lines[i+1] != want {
			t.Errorf("row %d: %q, want %q\n%s", i+1, lines[i+1], want, out.String())
		}
	}
}

package store

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestProgressTotal: the total reported is the estimate, or what is done once that is more;
// an unknown total (0) stays unknown.
func TestProgressTotal(t *testing.T) {
	for _, estimate := range []int64{0, 10, 100} {
		var reports [][2]int64
		p := &Progress{Total: estimate, Report: func(done, total int64) { reports = append(reports, [2]int64{done, total}) }}
		if _, err := io.Copy(io.Discard, p.Reader(iotest.OneByteReader(strings.NewReader(strings.Repeat("x", 40))))); err != nil {
			t.Fatal(err)
		}
		if len(reports) < 40 {
			t.Fatalf("estimate %d: %d reports, want one a byte", estimate, len(reports))
		}
		for _, r := range reports {
			done, total := r[0], r[1]
			if estimate == 0 && total != 0 || estimate > 0 && (total < done || total != max(estimate, done)) {
				t.Errorf("estimate %d: reported %d of %d", estimate, done, total)
			}
		}
	}
}

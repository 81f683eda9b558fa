package boundjson

import (
	"io"
	"strings"
	"testing"
)

// TestBound: values within the bound read, however long the input; one past it fails.
func TestBound(t *testing.T) {
	long := "[" + strings.Repeat(`"`+strings.Repeat("a", 500)+`",`, 10000) + `"b"]`
	dec := NewDecoder(strings.NewReader(long), 4<<10)
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for dec.More() {
		var s string
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("value %d: %v", n, err)
		}
		n++
	}
	if n != 10001 {
		t.Errorf("read %d values, want 10001", n)
	}
	dec = NewDecoder(io.MultiReader(strings.NewReader(`{"a":"`), strings.NewReader(strings.Repeat("a", 3<<20))), 1<<20)
	var v map[string]string
	if err := dec.Decode(&v); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a 3 MiB value read under a 1 MiB bound: %v", err)
	}
}

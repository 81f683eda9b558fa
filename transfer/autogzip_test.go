package transfer

import (
	"bytes"
	"compress/gzip"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
)

func TestNextStored(t *testing.T) {
	for _, c := range []struct {
		name   string
		stored bool
		waited float64
		rate   [2]float64
		run    int
		want   bool
	}{
		{"slow link: never tries stored", false, 0.9, [2]float64{30, 0}, 40, false},
		{"compressing is slowest: try stored", false, 0.2, [2]float64{30, 0}, 1, true},
		{"stored was faster", true, 0.9, [2]float64{30, 90}, 1, true},
		{"stored was slower", true, 0.9, [2]float64{30, 12}, 1, false},
		{"stored was barely faster: bytes count", true, 0.9, [2]float64{30, 33}, 1, false},
		{"long stored run: try compressing again", true, 0.9, [2]float64{30, 90}, autoRetry, false},
		{"back from the retry, stored still faster", false, 0.9, [2]float64{30, 90}, 1, true},
		{"long compressed run on a slow link: no retry", false, 0.9, [2]float64{30, 12}, autoRetry, false},
		{"long compressed run, compressing slowest: retry", false, 0.2, [2]float64{30, 12}, autoRetry, true},
	} {
		if got := nextStored(c.stored, c.waited, c.rate, c.run); got != c.want {
			t.Errorf("%s: nextStored = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestAutoGzipMembers checks that a stream of compressed and stored members, whatever the
// modes chosen, decompresses to the input with Go's reader and with gzip(1).
func TestAutoGzipMembers(t *testing.T) {
	words := []string{"layer ", "blob ", "docker ", "ferry ", "\n"}
	var in bytes.Buffer
	rng := rand.New(rand.NewPCG(1, 2))
	for in.Len() < 3*autoMember+12345 {
		in.WriteString(words[rng.IntN(len(words))])
	}
	var out bytes.Buffer
	a := newAutoGzip(&out, 1, false)
	src := bytes.NewReader(in.Bytes())
	for members := 0; ; members++ {
		a.stored = members%2 == 1 // compressed, stored, compressed, stored
		if _, err := io.CopyN(a, src, autoMember); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Stored: the second member whole and the short fourth; the others shrink to a fifth.
	if out.Len() < autoMember || out.Len() > autoMember*3/2 {
		t.Errorf("%d bytes out of %d: want the second and fourth members stored", out.Len(), in.Len())
	}
	zr, err := gzip.NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, in.Bytes()) {
		t.Fatalf("Go's gzip reader: %d bytes, %v; want the %d bytes written", len(got), err, in.Len())
	}
	cmd := exec.Command("gzip", "-dc")
	cmd.Stdin = bytes.NewReader(out.Bytes())
	got, err = cmd.Output()
	if err != nil || !bytes.Equal(got, in.Bytes()) {
		t.Fatalf("gzip -dc: %d bytes, %v; want the %d bytes written", len(got), err, in.Len())
	}
}

package compress

import (
	"bytes"
	"io"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/ferrytool/ferry/internal/testenv"
)

func TestAdaptiveChoose(t *testing.T) {
	gzipLevels := AdaptiveLevels(Gzip)
	top := len(gzipLevels) - 1
	for _, c := range []struct {
		name   string
		at     int        // the part's level index; -1 stored
		rate   [2]float64 // after the part
		run    int        // after the part
		waited float64
		want   int
	}{
		{"slow link at the lowest level: up", 0, [2]float64{30, 0}, 1, 0.9, 1},
		{"slow link at the top: stays", top, [2]float64{30, 0}, 40, 0.95, top},
		{"link kept busy: stays", 1, [2]float64{30, 0}, 3, 0.45, 1},
		{"compressing holds the link back: down", top, [2]float64{30, 0}, 2, 0.1, top - 1},
		{"compressing at the lowest level is slowest: try stored", 0, [2]float64{30, 0}, 1, 0.1, -1},
		{"link kept busy at the lowest level: no stored trial", 0, [2]float64{30, 0}, 40, 0.5, 0},
		{"stored was faster", -1, [2]float64{30, 90}, 1, 0.9, -1},
		{"stored was slower", -1, [2]float64{30, 12}, 1, 0.1, 0},
		{"stored was barely faster: bytes count", -1, [2]float64{30, 33}, 1, 0.1, 0},
		{"long stored run: try compressing again", -1, [2]float64{30, 90}, adaptRetry, 0.1, 0},
		{"back from the retry, stored still faster", 0, [2]float64{30, 90}, 1, 0.9, -1},
		{"long compressed run, compressing slowest: retry stored", 0, [2]float64{30, 12}, adaptRetry, 0.1, -1},
		{"compressing slowest, stored slower not long ago: stays", 0, [2]float64{30, 12}, 3, 0.1, 0},
	} {
		a := NewAdaptive(Gzip, gzipLevels, true)
		a.at, a.rate, a.run = c.at, c.rate, c.run
		if got := a.choose(c.at < 0, c.waited); got != c.want {
			t.Errorf("%s: choose = %d, want %d", c.name, got, c.want)
		}
	}
	a := NewAdaptive(Zstd, AdaptiveLevels(Zstd), true) // zstd is never stored
	if got := a.choose(false, 0.1); got != 0 {
		t.Errorf("zstd at its lowest level, compressing slowest: choose = %d, want 0", got)
	}
}

// TestAdaptiveLearns: the parts a writer makes for a destination that waits climb the levels,
// and those for one that never waits come down to a stored trial.
func TestAdaptiveLearns(t *testing.T) {
	top := AdaptiveLevels(Gzip)[len(AdaptiveLevels(Gzip))-1]
	for _, c := range []struct {
		name string
		dst  io.Writer
		at   int   // where it starts
		want []int // the levels after the first part, each part after
	}{
		{"slow destination", slowWriter{}, 0, []int{1, 4, 6}},
		{"destination that never waits", io.Discard, 2, []int{top, 4, 1, 0}},
	} {
		a := NewAdaptive(Gzip, AdaptiveLevels(Gzip), true)
		a.at = c.at
		w := a.Writer(c.dst)
		in := bytes.NewReader(testenv.RandomText(len(c.want) * adaptPart))
		var got []int
		for range c.want {
			if _, err := io.CopyN(w, in, adaptPart); err != nil {
				t.Fatal(err)
			}
			got = append(got, a.next())
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: levels %v, want %v", c.name, got, c.want)
		}
	}
}

// slowWriter takes 40 ms for every write, however small: a link far slower than compressing.
type slowWriter struct{}

func (slowWriter) Write(p []byte) (int, error) {
	time.Sleep(40 * time.Millisecond)
	return len(p), nil
}

// TestAdaptiveParts: a stream of parts at every level, and stored, is one stream to Go's
// readers and to gzip(1) and zstd(1), whatever the choices.
func TestAdaptiveParts(t *testing.T) {
	in := testenv.RandomText(5*adaptPart + 12345)
	for _, c := range []struct {
		codec  Codec
		levels []int // each part's index in the levels, -1 stored
		tool   string
	}{
		{Gzip, []int{-1, 0, 1, 2, -1}, "gzip"},
		{Zstd, []int{0, 2, 1, 0, 1}, "zstd"},
	} {
		a := NewAdaptive(c.codec, AdaptiveLevels(c.codec), true)
		var out bytes.Buffer
		w := a.Writer(&out)
		src := bytes.NewReader(in)
		for _, at := range c.levels {
			a.at = at // Write asks for each part's level as the part begins
			if _, err := io.CopyN(w, src, adaptPart); err != nil && err != io.EOF {
				t.Fatal(err)
			}
		}
		if _, err := io.Copy(w, src); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if c.codec == Gzip && (out.Len() < adaptPart || out.Len() > adaptPart*5/2) {
			t.Errorf("gzip: %d bytes out of %d: want the first and last whole parts stored, the others smaller", out.Len(), len(in))
		}
		zr, _, err := NewReader(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("%s: Go's reader: %d bytes, %v; want the %d bytes written", c.codec, len(got), err, len(in))
		}
		cmd := exec.Command(testenv.Require(t, c.tool), "-dc")
		cmd.Stdin = bytes.NewReader(out.Bytes())
		if got, err = cmd.Output(); err != nil || !bytes.Equal(got, in) {
			t.Fatalf("%s -dc: %d bytes, %v; want the %d bytes written", c.tool, len(got), err, len(in))
		}
	}
}

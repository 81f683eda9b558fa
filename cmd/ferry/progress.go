package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// progressFlags are the progress options every long-running verb takes.
type progressFlags struct {
	mode  string
	quiet bool
}

func (p *progressFlags) register(f *pflag.FlagSet) {
	f.StringVar(&p.mode, "progress", "auto", "progress on stderr: auto, bar, plain, json or none")
	f.BoolVarP(&p.quiet, "quiet", "q", false, "print no progress")
}

// progressBar renders byte progress on stderr: a bar on a terminal, a line every few seconds
// otherwise, JSON lines for scripts. It ends with one summary line (finish).
type progressBar struct {
	mode  string
	quiet bool
	label string
	w     io.Writer
	bar   *multiBar // on a terminal, once the first bytes are reported
	start time.Time

	mu    sync.Mutex
	last  time.Time
	done  int64
	total int64
}

func (p *progressFlags) start(cmd *cobra.Command, label string) *progressBar {
	mode := p.mode
	switch {
	case p.quiet:
		mode = "none"
	case mode == "auto" && isTerminal(os.Stderr):
		mode = "bar"
	case mode == "auto":
		mode = "plain"
	}
	now := time.Now()
	return &progressBar{mode: mode, quiet: p.quiet, label: label, w: cmd.ErrOrStderr(), start: now, last: now}
}

// update is a transfer progress callback: bytes done of total (0: unknown).
func (b *progressBar) update(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done, b.total = done, total
	switch b.mode {
	case "bar":
		if b.bar == nil {
			b.bar = newMultiBar(b.w, []string{b.label})
		}
		b.bar.set(0, done, total)
	case "plain", "json":
		if time.Since(b.last) >= 2*time.Second {
			b.last = time.Now()
			b.line("progress", nil, "")
		}
	}
}

// reader reports the bytes read through it, of total.
func (b *progressBar) reader(r io.Reader, total int64) io.Reader {
	return &progressReader{r: r, bar: b, total: total}
}

type progressReader struct {
	r     io.Reader
	bar   *progressBar
	done  int64
	total int64
}

func (p *progressReader) Read(buf []byte) (int, error) {
	n, err := p.r.Read(buf)
	p.done += int64(n)
	p.bar.update(p.done, p.total)
	return n, err
}

// finish ends the display. After a success, what says what was done ("saved 2 images to
// apps.tar"): a bar is drawn a last time at 100 %, and one summary line follows (what, how
// many bytes, how long), in every mode but -q and JSON, where the done event carries it.
// After a failure the bar stays where it stopped and main prints the error.
func (b *progressBar) finish(err error, what string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		if err == nil {
			b.bar.complete(0)
		}
		b.bar.stop()
	}
	switch {
	case b.mode == "json":
		b.line("done", err, what)
	case err == nil && !b.quiet:
		fmt.Fprintln(b.w, summaryLine(what, b.done, time.Since(b.start)))
	}
}

// summaryLine is the line that ends a verb's progress: what was done, how many bytes, how long.
func summaryLine(what string, bytes int64, elapsed time.Duration) string {
	s := elapsed.Seconds()
	return fmt.Sprintf("%s: %s in %.1fs (%s/s)", what, humanBytes(bytes), s, humanBytes(int64(float64(bytes)/max(s, 1e-3))))
}

func (b *progressBar) line(event string, err error, what string) {
	elapsed := time.Since(b.start).Seconds()
	rate := float64(b.done) / max(elapsed, 1e-3)
	if b.mode == "json" {
		ev := map[string]any{"event": event, "action": b.label, "bytes": b.done, "total": b.total, "seconds": elapsed}
		if err != nil {
			ev["error"] = err.Error()
		} else if what != "" {
			ev["summary"] = what
		}
		json.NewEncoder(b.w).Encode(ev) //nolint:errcheck
		return
	}
	of := ""
	if b.total > 0 {
		of = fmt.Sprintf(" of %s (%d%%)", humanBytes(b.total), min(100, b.done*100/b.total))
	}
	fmt.Fprintf(b.w, "%s: %s%s, %s/s, %.1fs\n", b.label, humanBytes(b.done), of, humanBytes(int64(rate)), elapsed)
}

// plural is "1 image", "2 images".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// holding counts what a bundle holds, for people: "2 images", "1 image and 3 artifacts",
// "1 artifact".
func holding(images, artifacts int) string {
	switch {
	case artifacts == 0:
		return plural(images, "image")
	case images == 0:
		return plural(artifacts, "artifact")
	}
	return plural(images, "image") + " and " + plural(artifacts, "artifact")
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

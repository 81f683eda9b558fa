package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
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
// otherwise, JSON lines for scripts.
type progressBar struct {
	mode  string
	label string
	w     io.Writer
	bar   *progressbar.ProgressBar
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
	return &progressBar{mode: mode, label: label, w: cmd.ErrOrStderr(), start: time.Now()}
}

// update is a transfer progress callback: bytes done of total (0: unknown).
func (b *progressBar) update(done, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done, b.total = done, total
	switch b.mode {
	case "bar":
		if b.bar == nil {
			limit := total
			if limit <= 0 {
				limit = -1 // unknown: a spinner
			}
			b.bar = progressbar.NewOptions64(limit, progressbar.OptionSetWriter(b.w), progressbar.OptionShowBytes(true),
				progressbar.OptionSetDescription(b.label), progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionFullWidth(),
				progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionOnCompletion(func() { fmt.Fprintln(b.w) }))
		}
		if total > done {
			b.bar.ChangeMax64(total)
		}
		b.bar.Set64(done) //nolint:errcheck
	case "plain", "json":
		if time.Since(b.last) >= 2*time.Second {
			b.last = time.Now()
			b.line("progress", nil)
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

// finish ends the display, saying how it ended.
func (b *progressBar) finish(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.mode {
	case "bar":
		if b.bar != nil && err == nil {
			b.bar.Finish() //nolint:errcheck
		} else if b.bar != nil {
			fmt.Fprintln(b.w)
		}
	case "plain", "json":
		b.line("done", err)
	}
}

func (b *progressBar) line(event string, err error) {
	elapsed := time.Since(b.start).Seconds()
	rate := float64(b.done) / max(elapsed, 1e-3)
	if b.mode == "json" {
		ev := map[string]any{"event": event, "action": b.label, "bytes": b.done, "total": b.total, "seconds": elapsed}
		if err != nil {
			ev["error"] = err.Error()
		}
		json.NewEncoder(b.w).Encode(ev) //nolint:errcheck
		return
	}
	if event == "done" && err != nil {
		return // main prints the error
	}
	of := ""
	if b.total > 0 {
		of = fmt.Sprintf(" of %s (%d%%)", humanBytes(b.total), min(100, b.done*100/b.total))
	}
	fmt.Fprintf(b.w, "%s: %s%s, %s/s, %.1fs\n", b.label, humanBytes(b.done), of, humanBytes(int64(rate)), elapsed)
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

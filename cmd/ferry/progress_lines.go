package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ferrytool/ferry/transfer"
)

// sendProgress shows reading the source and sending to each host, a line each: bars
// redrawn together on a terminal, otherwise progressBar's plain or JSON lines.
type sendProgress struct {
	index map[string]int // host → line; line 0 is the source
	bars  *multiBar      // on a terminal
	lines []*progressBar // otherwise

	w     io.Writer
	quiet bool
	start time.Time

	askMu       sync.Mutex
	passphrases map[string][]byte
}

func newSendProgress(cmd *cobra.Command, flags *progressFlags, hosts []string) *sendProgress {
	labels := append([]string{"reading images"}, hosts...)
	s := &sendProgress{index: map[string]int{}, passphrases: map[string][]byte{}, w: cmd.ErrOrStderr(),
		quiet: flags.quiet, start: time.Now()}
	for i, h := range hosts {
		s.index[h] = i + 1
	}
	for _, label := range labels {
		s.lines = append(s.lines, flags.start(cmd, label))
	}
	if s.lines[0].mode == "bar" {
		s.bars, s.lines = newMultiBar(cmd.ErrOrStderr(), labels), nil
	}
	return s
}

func (s *sendProgress) reading(done, total int64) { s.update(0, done, total) }

func (s *sendProgress) sending(host string, sent, total int64) { s.update(s.index[host], sent, total) }

func (s *sendProgress) update(line int, done, total int64) {
	if s.bars != nil {
		s.bars.set(line, done, total)
		return
	}
	s.lines[line].update(done, total)
}

// finish ends the display: err is Send's, results say how each host went. The bars of the
// source and of each host that got the images end at 100 %; one summary line follows.
func (s *sendProgress) finish(results []transfer.HostResult, err error) {
	if s.bars != nil {
		if results != nil {
			s.bars.complete(0)
		}
		for _, r := range results {
			if r.Err == nil {
				s.bars.complete(s.index[r.Host])
			}
		}
		s.bars.stop()
	}
	if s.lines != nil && s.lines[0].mode == "json" {
		if results == nil {
			s.lines[0].finish(err, "")
			return
		}
		s.lines[0].finish(nil, "read the images")
		for _, r := range results {
			s.lines[s.index[r.Host]].finish(r.Err, "sent to "+r.Host)
		}
		return
	}
	if results == nil || s.quiet {
		return
	}
	var ok, images int
	var sent, full int64
	for _, r := range results {
		if r.Err == nil {
			ok++
			images = max(images, len(r.Loaded))
			sent += r.Sent
			full += r.Full
		}
	}
	if ok == 0 {
		return // main prints the error
	}
	fmt.Fprintf(s.w, "sent %s to %d of %d hosts: %s (the whole images: %s) in %.1fs\n", plural(images, "image"), ok, len(results),
		humanBytes(sent), humanBytes(full), time.Since(s.start).Seconds())
}

// askPassphrase asks on the terminal for the passphrase of a key file, once per file.
func (s *sendProgress) askPassphrase(path string) ([]byte, error) {
	s.askMu.Lock()
	defer s.askMu.Unlock()
	if p, ok := s.passphrases[path]; ok {
		return p, nil
	}
	var pass []byte
	var err error
	ask := func() { pass, err = promptPassphrase(path) }
	if s.bars != nil {
		s.bars.hold(ask)
	} else {
		ask()
	}
	if err != nil {
		return nil, err
	}
	s.passphrases[path] = pass
	return pass, nil
}

// multiBar draws progress bars on consecutive lines of a terminal, redrawing them all a few
// times a second. Only its own goroutine and hold touch the bars.
type multiBar struct {
	w    io.Writer
	quit chan struct{}
	done chan struct{}

	mu     sync.Mutex
	labels []string
	bars   []*progressbar.ProgressBar
	state  [][2]int64 // done, total per bar
	shown  [][2]int64 // what each bar was last set to
	drawn  int        // lines on screen to redraw
}

func newMultiBar(w io.Writer, labels []string) *multiBar {
	const maxLabel = 32
	width := 0
	for i, l := range labels {
		if r := []rune(l); len(r) > maxLabel {
			labels[i] = string(r[:maxLabel-1]) + "…"
		}
		width = max(width, len([]rune(labels[i])))
	}
	m := &multiBar{w: w, quit: make(chan struct{}), done: make(chan struct{}), state: make([][2]int64, len(labels)),
		shown: make([][2]int64, len(labels))}
	for _, l := range labels {
		m.labels = append(m.labels, fmt.Sprintf("%-*s", width, l))
		m.bars = append(m.bars, newBar(m.labels[len(m.labels)-1]))
	}
	go m.loop()
	return m
}

// newBar is one line of a multiBar: rendered into a string, drawn by the multiBar.
func newBar(label string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(-1, progressbar.OptionSetWriter(io.Discard),
		progressbar.OptionSetDescription(label), progressbar.OptionShowBytes(true), progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true), progressbar.OptionSetWidth(24), progressbar.OptionThrottle(0),
		progressbar.OptionSetRenderBlankState(true))
}

func (m *multiBar) set(i int, done, total int64) {
	m.mu.Lock()
	m.state[i] = [2]int64{done, max(done, total)}
	m.mu.Unlock()
}

// complete marks line i done: its total becomes what was done, so the bar ends at 100 %.
func (m *multiBar) complete(i int) {
	m.mu.Lock()
	m.state[i][1] = m.state[i][0]
	m.mu.Unlock()
}

func (m *multiBar) loop() {
	defer close(m.done)
	tick := time.NewTicker(150 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.quit:
			m.draw()
			return
		case <-tick.C:
			m.draw()
		}
	}
}

func (m *multiBar) draw() {
	m.mu.Lock()
	defer m.mu.Unlock()
	cols := 80
	if f, ok := m.w.(*os.File); ok {
		if c, _, err := term.GetSize(int(f.Fd())); err == nil && c > 0 {
			cols = c
		}
	}
	var out strings.Builder
	if m.drawn > 0 {
		fmt.Fprintf(&out, "\x1b[%dA", m.drawn)
	}
	for i, b := range m.bars {
		if done, total := m.state[i][0], m.state[i][1]; total > 0 && m.state[i] != m.shown[i] {
			if b.IsFinished() {
				// progressbar draws nothing more once done reached the total; a total
				// that grew since needs a new bar.
				b = newBar(m.labels[i])
				m.bars[i] = b
			}
			m.shown[i] = m.state[i]
			if b.GetMax64() != total {
				b.ChangeMax64(total)
			}
			b.Set64(done) //nolint:errcheck // only a display
		}
		line := []rune(strings.TrimLeft(b.String(), "\r"))
		if len(line) >= cols {
			line = line[:cols-1]
		}
		fmt.Fprintf(&out, "\r\x1b[2K%s\n", string(line))
	}
	m.drawn = len(m.bars)
	io.WriteString(m.w, out.String())
}

// hold runs f, which writes to the terminal, between redraws; the bars are drawn again
// below what it wrote.
func (m *multiBar) hold(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
	m.drawn = 0
}

// stop draws the bars a last time and stops redrawing them.
func (m *multiBar) stop() {
	close(m.quit)
	<-m.done
}

// promptPassphrase asks on the terminal for the passphrase of a key file.
func promptPassphrase(path string) ([]byte, error) {
	fmt.Fprintf(os.Stderr, "Enter passphrase for %s: ", path)
	defer fmt.Fprintln(os.Stderr)
	return term.ReadPassword(int(os.Stdin.Fd()))
}

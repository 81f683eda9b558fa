package compress

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"
)

// An Adaptive compresses the stream to one destination as it goes, choosing each part's
// compression from how the parts before it went. Each part (adaptPart bytes, or what ends a
// blob) is a member of its own, a gzip member or a zstd frame: every reader of the codec reads
// them as one stream. When the writer waited on the destination most of a part's time (a slow
// link, or a slow host: compressing had time to spare, and fewer bytes is what helps), the
// next part goes a level up; when it seldom waited (a fast link: compressing is what holds it
// back), a level down. The time spent waiting for the input counts for neither. Below the
// lowest level, gzip parts may be stored: a stored part is tried when compressing at the
// lowest level still held the stream back, and stored parts go on while they move a quarter
// more bytes per second than compressed ones did, with compressing tried again every
// adaptRetry parts. The same input does not give the same bytes: an Adaptive is for streams,
// never for files. One writer at a time may use it.
type Adaptive struct {
	codec  Codec
	levels []int // fastest first
	stored bool  // a part may be stored (gzip only)

	mu    sync.Mutex
	at    int        // levels[at] compresses the next part; -1: it is stored
	rate  [2]float64 // bytes/s of the last part at levels[0] and of the last stored part; 0: none yet
	run   int        // parts since the mode last changed
	begun bool       // a part was learnt from, or passed as the first
}

const (
	adaptPart  = 16 << 20 // uncompressed bytes per part
	adaptRetry = 16       // parts stored before compressing is tried again, or compressed before stored is
	// A part that waited on the destination more of its time than adaptUp: a level up; less
	// than adaptDown: a level down. The writer waits on a link it keeps busy for less than
	// all of the time (each part begins with a block to compress, while the buffers on the way
	// keep the link going): only a writer that seldom waits holds the link back.
	adaptUp   = 0.6
	adaptDown = 0.25
)

// AdaptiveLevels are the levels an Adaptive climbs for a codec: a level's bytes are worth
// its CPU only while it compresses well above a slow link's rate (gzip 6 takes twice level 1's
// CPU for 9 % fewer bytes of a Go toolchain, 7 three times for 10 %; zstd 3 2.7 times for
// 14 %, 4 twelve times for 18 %).
func AdaptiveLevels(codec Codec) []int {
	if codec == Zstd {
		return []int{1, 2, 3}
	}
	return []int{1, 4, 6}
}

// NewAdaptive returns an Adaptive compressing with codec at levels (fastest first; none:
// AdaptiveLevels), starting at the first; with stored, gzip parts may also be stored.
func NewAdaptive(codec Codec, levels []int, stored bool) *Adaptive {
	if len(levels) == 0 {
		levels = AdaptiveLevels(codec)
	}
	return &Adaptive{codec: codec, levels: levels, stored: stored && codec == Gzip}
}

// Codec returns the codec a's parts are in.
func (a *Adaptive) Codec() Codec { return a.codec }

// next returns the level of the next part; pgzip.NoCompression (0) is stored.
func (a *Adaptive) next() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.at < 0 {
		return pgzip.NoCompression
	}
	return a.levels[a.at]
}

// learn takes how a part at level went: n bytes in elapsed (the time its input took to come
// left out), of which waited writing to the destination.
func (a *Adaptive) learn(level int, n int64, elapsed, waited time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n < adaptPart/4 || elapsed <= 0 {
		return // a short part says little
	}
	if !a.begun {
		a.begun = true
		return // the first fills the buffers on the way: it waits little whatever the link
	}
	waited = min(waited, elapsed) // the destination may still be taking a part as its next input comes
	stored := level == pgzip.NoCompression
	rate := float64(n) / elapsed.Seconds()
	switch {
	case stored:
		a.rate[1] = rate
	case level == a.levels[0]:
		a.rate[0] = rate
	}
	a.run++
	at := a.choose(stored, float64(waited)/float64(elapsed))
	if at != a.at {
		a.at, a.run = at, 0
	}
}

// choose returns the next part's index in levels (-1: stored) after a part that spent the
// fraction waited of its time writing to the destination.
func (a *Adaptive) choose(stored bool, waited float64) int {
	fasterStored := a.rate[1] > 1.25*a.rate[0] // a quarter faster: stored costs bytes, and rates swing with what else runs
	switch {
	case stored:
		if fasterStored && a.run < adaptRetry {
			return -1
		}
		return 0
	case a.at == 0 && a.stored && a.rate[1] > 0 && fasterStored:
		return -1 // back from a retry, stored was still faster
	case waited > adaptUp && a.at < len(a.levels)-1:
		return a.at + 1
	case waited < adaptDown && a.at > 0:
		return a.at - 1
	case waited < adaptDown && a.stored && (a.rate[1] == 0 || a.run >= adaptRetry):
		return -1
	}
	return a.at
}

// Writer returns a writer of w's stream: parts of adaptPart bytes, each compressed as a
// chooses. Close ends the last part; it does not close w.
func (a *Adaptive) Writer(w io.Writer) io.WriteCloser {
	return &adaptiveWriter{a: a, out: &waitWriter{w: w}, zws: map[int]member{}}
}

type adaptiveWriter struct {
	a   *Adaptive
	out *waitWriter
	zws map[int]member // a compressor per level, reset for each part: their buffers are reused

	zw     member // the current part, nil between parts
	level  int    // the current part's
	n      int64  // bytes written into the current part
	start  time.Time
	waited time.Duration // out's waiting when the part began
	input  time.Duration // the time between the part's writes: its input coming
	left   time.Time     // when the last write returned
}

func (w *adaptiveWriter) Write(p []byte) (int, error) {
	if w.zw != nil {
		w.input += time.Since(w.left)
	}
	defer func() { w.left = time.Now() }()
	written := 0
	for len(p) > 0 {
		if w.zw == nil {
			if err := w.begin(); err != nil {
				return written, err
			}
		}
		n, err := w.zw.Write(p[:min(len(p), int(adaptPart-w.n))])
		written, w.n, p = written+n, w.n+int64(n), p[n:]
		if err != nil {
			return written, err
		}
		if w.n == adaptPart {
			if err := w.end(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// Close ends the last part.
func (w *adaptiveWriter) Close() error {
	if w.zw == nil {
		return nil
	}
	return w.end()
}

func (w *adaptiveWriter) begin() error {
	level := w.a.next()
	zw := w.zws[level]
	if zw == nil {
		var err error
		if zw, err = newMember(w.out, w.a.codec, level); err != nil {
			return err
		}
		w.zws[level] = zw
	} else if err := resetMember(zw, w.out); err != nil {
		return err
	}
	w.zw, w.level, w.n, w.start, w.waited, w.input = zw, level, 0, time.Now(), w.out.total(), 0
	return nil
}

func (w *adaptiveWriter) end() error {
	err := w.zw.Close()
	w.zw = nil
	if err == nil {
		w.a.learn(w.level, w.n, time.Since(w.start)-w.input, w.out.total()-w.waited)
	}
	return err
}

// waitWriter counts the time spent in w's Write.
type waitWriter struct {
	w     io.Writer
	nanos atomic.Int64
}

func (w *waitWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := w.w.Write(p)
	w.nanos.Add(int64(time.Since(start)))
	return n, err
}

func (w *waitWriter) total() time.Duration { return time.Duration(w.nanos.Load()) }

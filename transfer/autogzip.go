package transfer

import (
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/klauspost/pgzip"
)

// autoGzip compresses the stream to docker hosts only while compressing pays. It writes
// gzip members of autoMember bytes each (docker load reads a multi-member gzip stream like
// any other), each compressed at level or stored. On a slow link the writer waits on the
// hosts and compression multiplies the link's rate; on a fast link, or when the hosts
// share this machine's CPUs, compression is what the hosts wait for, and stored members go
// faster. Each mode's last member is timed, and nextStored chooses. Without adapt, every
// member is compressed.
type autoGzip struct {
	out   *waitWriter
	level int
	adapt bool

	zw     *pgzip.Writer    // the current member, nil between members
	zws    [2]*pgzip.Writer // a writer per mode, reset for each member: their buffers are reused
	stored bool             // the current member is stored
	n      int64            // bytes written into the current member
	start  time.Time
	waited time.Duration // out's waiting when the member began
	rate   [2]float64    // bytes/s of the last compressed [0] and stored [1] member; 0: none yet
	run    int           // members in the current mode
	ended  int           // members written
}

const (
	autoMember = 16 << 20 // uncompressed bytes per member
	autoRetry  = 16       // members in one mode before the other is tried again
)

func newAutoGzip(w io.Writer, level int, adapt bool) *autoGzip {
	return &autoGzip{out: &waitWriter{w: w}, level: level, adapt: adapt}
}

func (a *autoGzip) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if a.zw == nil {
			if err := a.begin(); err != nil {
				return written, err
			}
		}
		n, err := a.zw.Write(p[:min(len(p), int(autoMember-a.n))])
		written, a.n, p = written+n, a.n+int64(n), p[n:]
		if err != nil {
			return written, err
		}
		if a.n == autoMember {
			if err := a.end(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// Close ends the last member.
func (a *autoGzip) Close() error {
	if a.zw == nil {
		return nil
	}
	return a.end()
}

// mode indexes rate and zws: 0 compressed, 1 stored.
func (a *autoGzip) mode() int {
	if a.stored {
		return 1
	}
	return 0
}

func (a *autoGzip) begin() error {
	zw := a.zws[a.mode()]
	if zw == nil {
		level := a.level
		if a.stored {
			level = pgzip.NoCompression
		}
		var err error
		if zw, err = pgzip.NewWriterLevel(a.out, level); err != nil {
			return err
		}
		a.zws[a.mode()] = zw
	} else {
		zw.Reset(a.out)
	}
	if err := zw.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
		return err
	}
	a.zw, a.n, a.start, a.waited = zw, 0, time.Now(), a.out.total()
	return nil
}

func (a *autoGzip) end() error {
	err := a.zw.Close()
	a.zw = nil
	if err != nil {
		return err
	}
	a.ended++
	if !a.adapt || a.ended == 1 {
		return nil // the first member fills the buffers on the way to the hosts: it waits little whatever the link
	}
	elapsed := time.Since(a.start)
	a.rate[a.mode()] = float64(a.n) / elapsed.Seconds()
	a.run++
	next := nextStored(a.stored, float64(a.out.total()-a.waited)/float64(elapsed), a.rate, a.run)
	if next != a.stored {
		a.stored, a.run = next, 0
	}
	return nil
}

// nextStored decides whether the next member is stored, after a member in mode stored that
// spent the fraction waited of its time writing to the hosts; rate holds the last members'
// bytes/s per mode and run counts the members in this mode. Stored wins only when it was a
// quarter faster than compressed: it costs bytes, and rates swing with what else runs.
// Stored is first tried only when a compressed member waited on the hosts less than half its
// time (compressing, not the link, was slowest), so a slow link seldom pays for a trial;
// after autoRetry members in one mode the other is tried again, on the same condition for
// stored.
func nextStored(stored bool, waited float64, rate [2]float64, run int) bool {
	if stored || waited < 0.5 {
		untried := rate[0] == 0 || rate[1] == 0
		if untried || run >= autoRetry {
			return !stored
		}
	}
	return rate[1] > 1.25*rate[0]
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

package content

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"slices"
	"sort"
	"sync"

	"github.com/ferrytool/ferry/internal/leftover"
)

// A table finds where chunks lie by their sha256. It holds up to spillAt chunks in memory,
// then writes them out as a sorted run to a file that is unlinked as soon as it is made (a
// killed process leaves none, and the files close when the table is collected). Runs of
// about equal length are merged, so a table of n chunks has at most log2(n/spillAt) of them,
// and a lookup reads one short stretch of each: the index of a store of any size stays
// within a few MiB of memory.
type table struct {
	mem    map[[32]byte]loc
	runs   []*run
	better func(a, b loc) bool // whether a chunk is better found at a than at b

	mu  sync.Mutex // for err
	err error      // the first run that could not be written or read
}

// spillAt is how many chunks a table holds in memory (some 100 bytes each, with what a
// spill takes).
var spillAt = 1 << 16 // a variable for the tests

func newTable(better func(a, b loc) bool) *table {
	return &table{mem: map[[32]byte]loc{}, better: better}
}

// len returns how many chunks t holds: exactly while all are in memory, else at most that
// (a chunk may lie in more than one run).
func (t *table) len() int {
	n := len(t.mem)
	for _, r := range t.runs {
		n += r.n
	}
	return n
}

// put records that a chunk lies at l, unless it is better found where t has it already.
func (t *table) put(sum [32]byte, l loc) {
	if had, ok := t.mem[sum]; ok && !t.better(l, had) {
		return
	}
	t.mem[sum] = l
	if len(t.mem) >= spillAt && t.failed() == nil {
		t.spill()
	}
}

// get returns where a chunk is best found. A run that cannot be read finds nothing (a chunk
// not found is packed: a bigger delta, never a wrong one) and fails the table's next all.
func (t *table) get(sum [32]byte) (loc, bool) {
	best, ok := t.mem[sum]
	for _, r := range t.runs {
		l, found, err := r.get(sum)
		if err != nil {
			t.fail(err)
		}
		if found && (!ok || t.better(l, best)) {
			best, ok = l, true
		}
	}
	return best, ok
}

// all returns the chunks of t by their sha256, each where it is best found.
func (t *table) all() iter.Seq2[[32]byte, loc] {
	seqs := []iter.Seq2[[32]byte, loc]{t.inMemory()}
	for _, r := range t.runs {
		seqs = append(seqs, r.all(t.fail))
	}
	return mergeRuns(t.better, seqs)
}

func (t *table) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = fmt.Errorf("content index: a run on disk: %w", err)
	}
}

func (t *table) failed() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// spill writes what t holds in memory out as a run, then merges the last runs while the
// newer is at least half the older. A run that cannot be written leaves t in memory.
func (t *table) spill() {
	r, err := writeRun(t.inMemory())
	if err != nil {
		t.fail(err)
		return
	}
	clear(t.mem)
	t.runs = append(t.runs, r)
	for k := len(t.runs); k >= 2 && 2*t.runs[k-1].n >= t.runs[k-2].n; k = len(t.runs) {
		older, newer := t.runs[k-2], t.runs[k-1]
		m, err := writeRun(mergeRuns(t.better, []iter.Seq2[[32]byte, loc]{older.all(t.fail), newer.all(t.fail)}))
		if err == nil {
			err = t.failed()
		}
		if err != nil {
			t.fail(err)
			return
		}
		older.f.Close()
		newer.f.Close()
		t.runs = append(t.runs[:k-2], m)
	}
}

// inMemory returns the chunks t holds in memory, by their sha256.
func (t *table) inMemory() iter.Seq2[[32]byte, loc] {
	return func(yield func([32]byte, loc) bool) {
		for _, sum := range slices.SortedFunc(maps.Keys(t.mem), compareSums) {
			if !yield(sum, t.mem[sum]) {
				return
			}
		}
	}
}

func compareSums(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) }

// mergeRuns merges sequences sorted by sha256 into one, each sha256 once, where it is best found.
func mergeRuns(better func(a, b loc) bool, seqs []iter.Seq2[[32]byte, loc]) iter.Seq2[[32]byte, loc] {
	if len(seqs) == 1 {
		return seqs[0]
	}
	return func(yield func([32]byte, loc) bool) {
		type head struct {
			next func() ([32]byte, loc, bool)
			sum  [32]byte
			l    loc
		}
		var heads []*head
		for _, s := range seqs {
			next, stop := iter.Pull2(s)
			defer stop()
			h := &head{next: next}
			var ok bool
			if h.sum, h.l, ok = next(); ok {
				heads = append(heads, h)
			}
		}
		for len(heads) > 0 {
			least := slices.MinFunc(heads, func(a, b *head) int { return compareSums(a.sum, b.sum) }).sum
			var best loc
			found := false
			heads = slices.DeleteFunc(heads, func(h *head) bool {
				if h.sum != least {
					return false
				}
				if !found || better(h.l, best) {
					best, found = h.l, true
				}
				var ok bool
				h.sum, h.l, ok = h.next()
				return !ok
			})
			if !yield(least, best) {
				return
			}
		}
	}
}

// A run is chunks sorted by sha256 in a file of records (putRec). fan[b] is the first record whose sha256 begins
// with the two bytes b or more.
type run struct {
	f   *os.File
	n   int
	fan []uint32
}

const recSize = 32 + 8 + 4 + 4

// bufs are the buffers lookups read a run's records into.
var bufs = sync.Pool{New: func() any { return new([]byte) }}

func writeRun(chunks iter.Seq2[[32]byte, loc]) (*run, error) {
	f, err := leftover.Unlinked("ferry-chunks-")
	if err != nil {
		return nil, err
	}
	r := &run{f: f, fan: make([]uint32, 1<<16+1)}
	w := bufio.NewWriterSize(f, 1<<20)
	var b [recSize]byte
	for sum, l := range chunks {
		w.Write(putRec(b[:], sum, l))
		r.fan[int(binary.BigEndian.Uint16(sum[:]))+1]++
		r.n++
	}
	for i := 1; i < len(r.fan); i++ {
		r.fan[i] += r.fan[i-1]
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (r *run) get(sum [32]byte) (loc, bool, error) {
	b := int(binary.BigEndian.Uint16(sum[:]))
	lo, hi := int64(r.fan[b]), int64(r.fan[b+1])
	if lo == hi {
		return loc{}, false, nil
	}
	p := bufs.Get().(*[]byte)
	defer bufs.Put(p)
	if need := int((hi - lo) * recSize); cap(*p) < need {
		*p = make([]byte, need)
	}
	buf := (*p)[:(hi-lo)*recSize]
	if _, err := r.f.ReadAt(buf, lo*recSize); err != nil {
		return loc{}, false, err
	}
	n := len(buf) / recSize
	k := sort.Search(n, func(k int) bool { return bytes.Compare(buf[k*recSize:k*recSize+32], sum[:]) >= 0 })
	if k == n || !bytes.Equal(buf[k*recSize:k*recSize+32], sum[:]) {
		return loc{}, false, nil
	}
	return getRec(buf[k*recSize:]), true, nil
}

// all returns r's chunks in order; a read that fails ends them and is told to fail.
func (r *run) all(fail func(error)) iter.Seq2[[32]byte, loc] {
	return func(yield func([32]byte, loc) bool) {
		br := bufio.NewReaderSize(io.NewSectionReader(r.f, 0, int64(r.n)*recSize), 1<<20)
		var b [recSize]byte
		for range r.n {
			if _, err := io.ReadFull(br, b[:]); err != nil {
				fail(err)
				return
			}
			if !yield([32]byte(b[:32]), getRec(b[:])) {
				return
			}
		}
	}
}

// Package parts writes a bundle as one file or as numbered parts (NAME.000, NAME.001, …) for
// removable media, with an optional sha256sum-compatible sidecar (NAME.sha256), and reads
// either back as one stream, naming a missing or damaged part.
package parts

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ferrytool/ferry/internal/atomicfile"
)

// ParseSize parses a part size: a number of bytes with an optional unit, k, M, G, T (powers
// of 1000, so 4G fits FAT32's 4 GiB - 1 limit) or Ki, Mi, Gi, Ti (powers of 1024).
func ParseSize(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)([kKMGT]i?)?[bB]?$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("invalid size %q: use a number with k, M, G or T (or Ki, Mi, Gi, Ti)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	base := int64(1000)
	if strings.HasSuffix(m[2], "i") {
		base = 1024
	}
	exp := 0
	if m[2] != "" {
		exp = strings.IndexByte("kmgt", strings.ToLower(m[2])[0]) + 1
	}
	for range exp {
		n *= base
	}
	if n < 1<<20 {
		return 0, fmt.Errorf("size %q is too small: parts must be at least 1 MiB", s)
	}
	return n, nil
}

// A Writer writes a bundle to path, or to parts of at most partSize bytes when partSize > 0.
// Nothing appears at the destination before Commit, which renames every part into place and
// writes the sidecar last.
type Writer struct {
	path     string
	partSize int64
	checksum bool

	parts []*atomicfile.File
	sums  []hash.Hash
	buf   *bufio.Writer
	n     int64 // bytes in the current part
}

// Create starts writing a bundle.
func Create(path string, partSize int64, checksum bool) (*Writer, error) {
	w := &Writer{path: path, partSize: partSize, checksum: checksum}
	return w, w.next()
}

func (w *Writer) name(i int) string {
	if w.partSize == 0 {
		return w.path
	}
	return fmt.Sprintf("%s.%03d", w.path, i)
}

func (w *Writer) next() error {
	if w.buf != nil {
		if err := w.buf.Flush(); err != nil {
			return err
		}
	}
	if len(w.parts) == 1000 {
		return fmt.Errorf("a bundle splits into at most 1000 parts: use a larger --split")
	}
	f, err := atomicfile.Create(w.name(len(w.parts)), 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	w.parts, w.sums = append(w.parts, f), append(w.sums, h)
	w.buf = bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	w.n = 0
	return nil
}

func (w *Writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.partSize > 0 && w.n == w.partSize {
			if err := w.next(); err != nil {
				return written, err
			}
		}
		chunk := p
		if w.partSize > 0 && int64(len(chunk)) > w.partSize-w.n {
			chunk = chunk[:w.partSize-w.n]
		}
		n, err := w.buf.Write(chunk)
		written += n
		w.n += int64(n)
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Commit makes the bundle, its parts and its sidecar appear.
func (w *Writer) Commit() error {
	if err := w.buf.Flush(); err != nil {
		w.Abort()
		return err
	}
	var sidecar strings.Builder
	for i, part := range w.parts {
		if err := part.Commit(); err != nil {
			w.Abort()
			for _, done := range w.parts[:i] {
				os.Remove(done.Name())
			}
			return err
		}
		fmt.Fprintf(&sidecar, "%s  %s\n", hex.EncodeToString(w.sums[i].Sum(nil)), filepath.Base(w.name(i)))
	}
	if !w.checksum {
		return nil
	}
	return atomicfile.WriteFile(w.path+".sha256", []byte(sidecar.String()), 0o644)
}

// Abort drops everything written; the destination is untouched.
func (w *Writer) Abort() {
	for _, part := range w.parts {
		part.Abort()
	}
}

// ErrPart: a part of a split bundle is missing or damaged.
var ErrPart = errors.New("bad part")

// Open opens a bundle for reading: a file, or the parts of a split bundle named by their first
// part (NAME.000) or by NAME. With a sidecar (NAME.sha256) each file is checked as it is read.
// size is the total.
func Open(path string) (r io.ReadCloser, size int64, err error) {
	base, names, err := partNames(path)
	if err != nil {
		return nil, 0, err
	}
	sums, err := readSidecar(base + ".sha256")
	if err != nil {
		return nil, 0, err
	}
	for name := range sums {
		if !exists(filepath.Join(filepath.Dir(base), name)) {
			return nil, 0, fmt.Errorf("%w: %s is missing (%s lists it)", ErrPart, filepath.Join(filepath.Dir(base), name), base+".sha256")
		}
	}
	pr := &reader{names: names, sums: sums}
	for _, name := range names {
		st, err := os.Stat(name)
		if err != nil {
			return nil, 0, err
		}
		if st.IsDir() {
			return nil, 0, fmt.Errorf("%s is a directory, not a bundle", name)
		}
		size += st.Size()
	}
	return pr, size, nil
}

var partSuffix = regexp.MustCompile(`\.([0-9]{3})$`)

// partNames returns the files of the bundle at path, in order.
func partNames(path string) (base string, names []string, err error) {
	if !partSuffix.MatchString(path) {
		if _, err := os.Stat(path); err == nil || !exists(path+".000") {
			return path, []string{path}, nil
		}
		path += ".000"
	}
	base = partSuffix.ReplaceAllString(path, "")
	found, _ := filepath.Glob(base + ".[0-9][0-9][0-9]")
	for i, name := range found {
		if want := fmt.Sprintf("%s.%03d", base, i); name != want {
			return "", nil, fmt.Errorf("%w: %s is missing (found %d parts, up to %s)", ErrPart, want, len(found), found[len(found)-1])
		}
	}
	if len(found) == 0 {
		return "", nil, fmt.Errorf("%w: %s does not exist", ErrPart, path)
	}
	return base, found, nil
}

// readSidecar reads a sha256sum file: file base name → hex digest. No file, no sums.
func readSidecar(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("%s: not a sha256sum file: %q", path, line)
		}
		sums[strings.TrimPrefix(name, "*")] = sum
	}
	return sums, nil
}

// reader reads the files one after another, checking each against the sidecar at its end.
type reader struct {
	names []string
	sums  map[string]string
	cur   *os.File
	h     hash.Hash
	i     int
}

func (r *reader) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if r.i == len(r.names) {
				return 0, io.EOF
			}
			f, err := os.Open(r.names[r.i])
			if err != nil {
				return 0, err
			}
			r.cur, r.h = f, sha256.New()
		}
		n, err := r.cur.Read(p)
		r.h.Write(p[:n])
		if err == io.EOF {
			err = r.finishPart()
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		return n, err
	}
}

func (r *reader) finishPart() error {
	name := r.names[r.i]
	r.cur.Close()
	r.cur = nil
	r.i++
	want, ok := r.sums[filepath.Base(name)]
	if got := hex.EncodeToString(r.h.Sum(nil)); ok && got != want {
		return fmt.Errorf("%w: %s is damaged: its sha256 is %s, the sidecar says %s", ErrPart, name, got, want)
	}
	if !ok && len(r.sums) > 0 {
		return fmt.Errorf("%w: %s is not in the sidecar", ErrPart, name)
	}
	return nil
}

// Part names the file being read, to say where in a split bundle an error lies.
func (r *reader) Part() string {
	return r.names[min(r.i, len(r.names)-1)]
}

func (r *reader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

package content

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// A recipe gives a layer back as a sequence of ops: raw bytes it carries, or a run of bytes
// to copy from a layer the store holds (base) or from the delta's new chunks (pack).
const (
	opEnd byte = iota
	opRaw
	opBase
	opPack
)

// An op is one step of a recipe: n bytes, from offset off of base layer layer, or of the
// pack, or (raw) carried after the op.
type op struct {
	kind  byte
	layer uint32
	off   int64
	n     int64
}

// maxRaw caps the raw bytes one op carries: a writer flushes before it.
const maxRaw = 1 << 20

// A recipeWriter writes ops, merging a copy with the one before it when they are contiguous
// and gathering raw bytes.
type recipeWriter struct {
	w    *bufio.Writer
	n    int64 // bytes written
	pend op    // a copy not yet written (kind opEnd: none)
	raw  []byte
}

func (rw *recipeWriter) write(p []byte) error {
	n, err := rw.w.Write(p)
	rw.n += int64(n)
	return err
}

func (rw *recipeWriter) copy(o op) error {
	if err := rw.flushRaw(); err != nil {
		return err
	}
	if p := &rw.pend; p.kind == o.kind && p.layer == o.layer && p.off+p.n == o.off {
		p.n += o.n
		return nil
	}
	if err := rw.flushCopy(); err != nil {
		return err
	}
	rw.pend = o
	return nil
}

func (rw *recipeWriter) addRaw(p []byte) error {
	if err := rw.flushCopy(); err != nil {
		return err
	}
	for len(p) > 0 {
		k := min(len(p), maxRaw-len(rw.raw))
		rw.raw, p = append(rw.raw, p[:k]...), p[k:]
		if len(rw.raw) == maxRaw {
			if err := rw.flushRaw(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (rw *recipeWriter) flushRaw() error {
	if len(rw.raw) == 0 {
		return nil
	}
	err := rw.write(binary.AppendUvarint([]byte{opRaw}, uint64(len(rw.raw))))
	if err == nil {
		err = rw.write(rw.raw)
	}
	rw.raw = rw.raw[:0]
	return err
}

func (rw *recipeWriter) flushCopy() error {
	p := rw.pend
	rw.pend = op{}
	switch p.kind {
	case opBase:
		b := binary.AppendUvarint([]byte{opBase}, uint64(p.layer))
		return rw.write(binary.AppendUvarint(binary.AppendUvarint(b, uint64(p.off)), uint64(p.n)))
	case opPack:
		return rw.write(binary.AppendUvarint(binary.AppendUvarint([]byte{opPack}, uint64(p.off)), uint64(p.n)))
	}
	return nil
}

// end ends a layer's recipe.
func (rw *recipeWriter) end() error {
	if err := rw.flushRaw(); err != nil {
		return err
	}
	if err := rw.flushCopy(); err != nil {
		return err
	}
	return rw.write([]byte{opEnd})
}

// readOp reads the next op of a recipe; an opRaw's bytes follow it in r. Every number is
// checked by the caller against what it may name.
func readOp(r *bufio.Reader) (op, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return op{}, noEOFIsCut(err)
	}
	var v [3]uint64
	args := map[byte]int{opEnd: 0, opRaw: 1, opBase: 3, opPack: 2}
	k, ok := args[kind]
	if !ok {
		return op{}, fmt.Errorf("unknown recipe op %d", kind)
	}
	for i := range k {
		if v[i], err = binary.ReadUvarint(r); err != nil {
			return op{}, noEOFIsCut(err)
		}
		if v[i] > 1<<62 {
			return op{}, fmt.Errorf("recipe op %d: number out of range", kind)
		}
	}
	switch kind {
	case opRaw:
		return op{kind: kind, n: int64(v[0])}, nil
	case opBase:
		if v[0] > 1<<31 {
			return op{}, fmt.Errorf("recipe op %d: layer out of range", kind)
		}
		return op{kind: kind, layer: uint32(v[0]), off: int64(v[1]), n: int64(v[2])}, nil
	case opPack:
		return op{kind: kind, off: int64(v[0]), n: int64(v[1])}, nil
	}
	return op{kind: opEnd}, nil
}

func noEOFIsCut(err error) error {
	if err == io.EOF {
		return fmt.Errorf("a recipe is cut short: %w", io.ErrUnexpectedEOF)
	}
	return err
}

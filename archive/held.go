package archive

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/ferrytool/ferry/internal/leftover"
)

// Sinks that hand entries on (a docker load stream, an OCI layout) hold back those the
// metadata read so far does not list, in one file, until the verified bundle says which it
// uses. A bundle may hold any number of such entries, so the file carries what a sink would
// otherwise keep in memory per entry: each entry follows a header of its own, the key of its
// name and its size.

const heldHeader = 8 + 8

// HeldMax is the size under which a sink that can keep an entry in a file of its own holds it
// back in the held file instead. Small entries the metadata read so far does not list may be
// junk — in a bundle whose manifest.json comes last, any number of them — and a file each
// would cost more than reading them; or they are a legacy bundle's small layers and configs.
// A Forwarder, which has nowhere else to keep them, holds back every such entry.
const HeldMax = 1 << 20

// WriteHeld appends one entry, e.Size bytes of r, to a file of held entries.
func WriteHeld(w io.Writer, e Entry, r io.Reader, buf []byte) error {
	var header [heldHeader]byte
	binary.LittleEndian.PutUint64(header[:8], uint64(KeyOf(e.Name)))
	binary.LittleEndian.PutUint64(header[8:], uint64(e.Size))
	if _, err := w.Write(header[:]); err != nil {
		return err
	}
	n, err := io.CopyBuffer(w, io.LimitReader(r, e.Size), buf)
	if err == nil && n != e.Size {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// ScanHeld reads a file of held entries (r) from its start, and calls take with each entry
// whose name's key is in want, its size and its bytes, removing it from want; it stops when
// want is empty or the file ends, so that what is left in want was not held.
func ScanHeld[T any](r io.Reader, want map[NameKey]T, take func(v T, size int64, body io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for len(want) > 0 {
		var header [heldHeader]byte
		if _, err := io.ReadFull(br, header[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the held entries: %w", err)
		}
		key, size := NameKey(binary.LittleEndian.Uint64(header[:8])), int64(binary.LittleEndian.Uint64(header[8:]))
		body := io.LimitReader(br, size)
		if v, ok := want[key]; ok {
			delete(want, key)
			if err := take(v, size, body); err != nil {
				return err
			}
		}
		if _, err := io.Copy(io.Discard, body); err != nil { // what take left, or all of it
			return fmt.Errorf("reading the held entries: %w", err)
		}
	}
	return nil
}

// heldFile makes a temporary file for what a reader or a Forwarder holds back: removed at
// once, it is gone with its descriptor.
func heldFile() (*os.File, error) { return leftover.Unlinked("ferry-held-") }

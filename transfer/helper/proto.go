package helper

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The protocol. Each side first writes a hello line, "ferry-helper VERSION\n"; the helper
// answers a version it does not know with "ferry-helper refused: …\n" and exits. Then the
// near side writes one request, a JSON line, and the helper answers with replies, JSON
// lines; a message whose Size is set is followed by that many bytes. A load is a request (the
// store, the repositories of the images sent, and whether the store's content index is
// wanted: then the first reply carries it); the helper reads the images of the store in those
// repositories, which the delta will likely build on, from the moment it has the index. Once
// the delta is made, a second message names it (Digest and Size), a reply says how many bytes
// of it the host holds already (Offset), the rest of its bytes follow, and a last reply.

// Version is the protocol version this ferry speaks.
const Version = 3

// hello is the line each side starts with.
const hello = "ferry-helper "

// OpLoad is the operation a Request asks for: a content delta to rebuild and load into the
// store.
const OpLoad = "load"

// A Request is what the near side asks of the helper.
type Request struct {
	Op string `json:"op"`
	// Store is the store on the host, as the reference grammar names it; Socket the path of
	// its daemon's socket there ("" for its default), Env the values of the variables its
	// kind is opened with (store.Kind.Env), as this machine has them.
	Store  string            `json:"store"`
	Socket string            `json:"socket,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// Index asks for the store's content index, zstd-compressed JSON after the first reply.
	Index bool `json:"index,omitempty"`
	// Repos are the repositories of the images sent: the helper reads the images of the
	// store in them, which the delta will likely build on, while the delta is made.
	Repos []string `json:"repos,omitempty"`
	// Digest (sha256, hex) and Size are the content delta's, in a load's second message.
	Digest string `json:"digest,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

// A Reply is what the helper answers.
type Reply struct {
	// Error says why the request failed; Rebuild, that the delta could not be rebuilt there
	// (a layer it builds on is missing or not what it expects): the near side sends layers.
	Error   string `json:"error,omitempty"`
	Rebuild bool   `json:"rebuild,omitempty"`
	// Size is the bytes that follow the reply (the index, in a load's first reply).
	Size int64 `json:"size,omitempty"`
	// Offset is the bytes of the delta the host holds from a cut send (the reply to its name).
	Offset int64 `json:"offset,omitempty"`
	// Loaded is what a load loaded, as the store says.
	Loaded []string `json:"loaded,omitempty"`
	// Notes are what the store on the host said it did less well than it could, and why.
	Notes []string `json:"notes,omitempty"`
}

// Bounds on what either side reads of the other's messages.
const (
	maxLine  = 1 << 20   // a JSON line
	maxIndex = 256 << 20 // an index, compressed
)

// ErrVersion: the helper does not speak the protocol version asked for.
var ErrVersion = errors.New("protocol version unknown to the helper")

// errProtocol: what came is not the protocol.
var errProtocol = errors.New("not the ferry helper protocol")

func helloLine(v int) string { return hello + strconv.Itoa(v) + "\n" }

// readLine reads one line of at most max bytes, without its newline.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > max {
			return nil, fmt.Errorf("%w: a line over %d bytes", errProtocol, max)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

// readHello reads the other side's hello line and returns its version. skip is how many
// bytes of other lines may come first (what a login shell prints); a refusal is ErrVersion.
func readHello(r *bufio.Reader, skip int) (int, error) {
	for read := 0; ; {
		line, err := readLine(r, 256)
		if err != nil {
			return 0, err
		}
		rest, ok := strings.CutPrefix(string(line), hello)
		if !ok {
			if read += len(line) + 1; read > skip {
				return 0, errProtocol
			}
			continue
		}
		if why, ok := strings.CutPrefix(rest, "refused: "); ok {
			return 0, fmt.Errorf("%w: %s", ErrVersion, why)
		}
		v, err := strconv.Atoi(rest)
		if err != nil || v < 1 {
			return 0, fmt.Errorf("%w: hello %q", errProtocol, line)
		}
		return v, nil
	}
}

// readMsg reads one JSON line into v, refusing fields it does not know.
func readMsg(r *bufio.Reader, v any) error {
	line, err := readLine(r, maxLine)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", errProtocol, err)
	}
	return nil
}

// writeMsg writes v as one JSON line.
func writeMsg(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

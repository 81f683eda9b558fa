// Command bigindex writes an inventory that holds what another does and, beside it, layers
// of as many chunks as asked (sha256s of counters: no image holds them): the content index
// of a store of any size, for the benchmarks of memory. It writes the chunks in the form IN
// has them: in pages, or as one string (as ferry wrote them before 2026-12-07).
//
//	bigindex IN.json OUT.json CHUNKS
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bigindex:", err)
		os.Exit(1)
	}
}

// The layers added: layerChunks chunks of 64 KiB each.
const (
	layerChunks = 1 << 16
	chunkSize   = 64 << 10
	pageRecs    = 1024
)

func run(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: bigindex IN.json OUT.json CHUNKS")
	}
	chunks, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var inv map[string]json.RawMessage
	if err := json.Unmarshal(data, &inv); err != nil {
		return err
	}
	var x struct {
		Layers []json.RawMessage `json:"layers"`
		Chunks json.RawMessage   `json:"chunks"`
	}
	if err := json.Unmarshal(inv["content"], &x); err != nil {
		return fmt.Errorf("%s: no content index: %w", args[0], err)
	}
	var pages []string
	oneString := json.Unmarshal(x.Chunks, &pages) != nil
	if oneString {
		pages = make([]string, 1)
		if err := json.Unmarshal(x.Chunks, &pages[0]); err != nil {
			return err
		}
	}
	first := len(x.Layers)
	for i := range (chunks + layerChunks - 1) / layerChunks {
		sum := sha256.Sum256([]byte("layer " + strconv.Itoa(i)))
		x.Layers = append(x.Layers, json.RawMessage(fmt.Sprintf(`{"diffID":"sha256:%x","size":%d}`, sum, layerChunks*chunkSize)))
	}
	var page []byte
	for i := range chunks {
		sum := sha256.Sum256([]byte("chunk " + strconv.Itoa(i)))
		page = append(page, sum[:]...)
		page = binary.AppendUvarint(page, uint64(first+i/layerChunks))
		page = binary.AppendUvarint(page, uint64(i%layerChunks*chunkSize))
		page = binary.AppendUvarint(page, chunkSize)
		if (i+1)%pageRecs == 0 || i == chunks-1 {
			pages = append(pages, base64.StdEncoding.EncodeToString(page))
			page = page[:0]
		}
	}
	if oneString {
		var all []byte
		for _, p := range pages {
			b, err := base64.StdEncoding.DecodeString(p)
			if err != nil {
				return err
			}
			all = append(all, b...)
		}
		x.Chunks, err = json.Marshal(base64.StdEncoding.EncodeToString(all))
	} else {
		x.Chunks, err = json.Marshal(pages)
	}
	if err != nil {
		return err
	}
	if inv["content"], err = json.Marshal(x); err != nil {
		return err
	}
	out, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	if err := os.WriteFile(args[1], out, 0o644); err != nil {
		return err
	}
	fmt.Println(strings.TrimSpace(fmt.Sprintf("%d chunks added in %d layers: %d bytes", chunks, len(x.Layers)-first, len(out))))
	return nil
}

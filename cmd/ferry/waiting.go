package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ferrytool/ferry/dedupe"
)

// waitNote says on w why a command waits for a lock (a wait with nothing printed looks like
// a hang): a JSON line when jsonLines, else a plain line.
func waitNote(w io.Writer, jsonLines bool) func(string) {
	return func(msg string) {
		if jsonLines {
			json.NewEncoder(w).Encode(map[string]string{"event": "waiting", "message": msg}) //nolint:errcheck
			return
		}
		fmt.Fprintln(w, "ferry:", msg)
	}
}

// waiting is waitNote for a command's progress mode: said whatever the mode, -q included.
func (p *progressFlags) waiting(w io.Writer) func(string) { return waitNote(w, p.mode == "json") }

// openPool opens a pool whose lock waits are said on w.
func openPool(dir string, w io.Writer) (*dedupe.Pool, error) {
	p, err := dedupe.OpenPool(dir)
	if err == nil {
		p.Waiting = waitNote(w, false)
	}
	return p, err
}

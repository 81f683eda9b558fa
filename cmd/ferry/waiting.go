package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ferrytool/ferry/dedupe"
)

// waiting says why a command waits for a lock, whatever the progress mode (a wait with
// nothing printed looks like a hang): a JSON line with --progress json, else a plain line.
func (p *progressFlags) waiting(w io.Writer) func(string) {
	return func(msg string) {
		if p.mode == "json" {
			json.NewEncoder(w).Encode(map[string]string{"event": "waiting", "message": msg}) //nolint:errcheck
			return
		}
		fmt.Fprintln(w, "ferry:", msg)
	}
}

// openPool opens a pool whose lock waits are said on w.
func openPool(dir string, w io.Writer) (*dedupe.Pool, error) {
	p, err := dedupe.OpenPool(dir)
	if err == nil {
		p.Waiting = (&progressFlags{}).waiting(w)
	}
	return p, err
}

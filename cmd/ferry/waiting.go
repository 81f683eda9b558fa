package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/ferrytool/ferry/dedupe"
)

// waitNote says on w why a command waits for a lock (a wait with nothing printed looks like
// a hang): a JSON line when jsonLines, else a plain line.
func waitNote(w io.Writer, jsonLines bool) func(string) { return say(w, jsonLines, "waiting") }

// say says a message on w: a JSON line of event when jsonLines, else a plain line.
func say(w io.Writer, jsonLines bool, event string) func(string) {
	return func(msg string) {
		if jsonLines {
			json.NewEncoder(w).Encode(map[string]string{"event": event, "message": msg}) //nolint:errcheck
			return
		}
		fmt.Fprintln(w, "ferry:", msg)
	}
}

// waiting is waitNote for a command's progress mode: said whatever the mode, -q included.
func (p *progressFlags) waiting(w io.Writer) func(string) { return waitNote(w, p.mode == "json") }

// note says on w, whatever the mode, when ferry does less than it could with a store, and
// why (transfer.Options.Note): a JSON line of event "note" with --progress=json.
func (p *progressFlags) note(w io.Writer) func(string) { return say(w, p.mode == "json", "note") }

// openPool opens a pool whose lock waits are said on w.
func openPool(dir string, w io.Writer) (*dedupe.Pool, error) {
	p, err := dedupe.OpenPool(dir)
	if err == nil {
		p.Waiting = waitNote(w, false)
	}
	return p, err
}

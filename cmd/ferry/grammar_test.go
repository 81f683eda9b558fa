package main

import (
	"os"
	"strings"
	"testing"
)

// readmeGrammarHeader starts the README's reference grammar table.
const readmeGrammarHeader = "| reference | -H | as a source, as a store, on a host |"

// TestREADMEGrammar checks that the README's reference grammar table says what --help
// says: the kinds' Syntax and Doc strings, whether -H applies, and the row for bundle files.
func TestREADMEGrammar(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	want.WriteString(readmeGrammarHeader + "\n| --- | --- | --- |\n")
	for _, row := range grammar() {
		if strings.Contains(row[2], "|") {
			t.Errorf("%s: a | in its Doc breaks the README table", row[0])
		}
		want.WriteString("| `" + row[0] + "` | " + row[1] + " | " + row[2] + " |\n")
	}
	lines := strings.SplitAfter(string(readme), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == readmeGrammarHeader {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("README.md has no table starting %q; it should hold:\n%s", readmeGrammarHeader, want.String())
	}
	var got strings.Builder
	for _, l := range lines[start:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		got.WriteString(l)
	}
	if got.String() != want.String() {
		t.Errorf("README.md's grammar table differs from the kinds' Syntax and Doc (what --help prints).\nREADME:\n%s\nwant:\n%s", got.String(), want.String())
	}
	for _, verb := range []string{"save", "load", "inventory", "send"} {
		cmd, _, err := newRootCmd().Find([]string{verb})
		if err != nil || !strings.Contains(cmd.Long, storeHelp()) {
			t.Errorf("ferry %s --help does not print the grammar", verb)
		}
	}
}

package main

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/store"
)

// storeNames are the kinds of store ferry is built with; each registers itself through a
// blank import where the program is assembled.
var storeNames = []string{"docker", "podman", "containerd", "oci", "registry", "pool"}

// TestKindsRegistered checks that the program is built with every kind of store.
func TestKindsRegistered(t *testing.T) {
	var names []string
	for _, k := range store.Kinds() {
		names = append(names, k.Name)
	}
	for _, name := range storeNames {
		if !slices.Contains(names, name) {
			t.Errorf("store kind %q is not registered (registered: %v): its package is not imported", name, names)
		}
	}
}

// TestRootHelpNamesEveryKind checks that ferry --help names every kind of store by its
// syntax.
func TestRootHelpNamesEveryKind(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, k := range store.Kinds() {
		if !strings.Contains(help, "  "+k.Syntax+" ") {
			t.Errorf("ferry --help does not name the store %s:\n%s", k.Syntax, help)
		}
	}
}

// TestREADMENamesEveryKind checks that the README's grammar table has a row for every kind
// of store, and none for a kind ferry does not have: the same source as --help.
func TestREADMENamesEveryKind(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string // the references of the table's rows
	in := false
	for _, l := range strings.Split(string(readme), "\n") {
		switch {
		case strings.TrimSpace(l) == readmeGrammarHeader:
			in = true
		case in && strings.HasPrefix(l, "| `"):
			ref, _, _ := strings.Cut(strings.TrimPrefix(l, "| `"), "`")
			rows = append(rows, ref)
		case in && !strings.HasPrefix(l, "|"):
			in = false
		}
	}
	if len(rows) == 0 {
		t.Fatalf("README.md has no grammar table starting %q", readmeGrammarHeader)
	}
	want := []string{"FILE"}
	for _, k := range store.Kinds() {
		want = append(want, k.Syntax)
		if !slices.Contains(rows, k.Syntax) {
			t.Errorf("README.md's grammar table has no row for the store %s", k.Syntax)
		}
	}
	for _, ref := range rows {
		if !slices.Contains(want, ref) {
			t.Errorf("README.md's grammar table has a row for %s, which is no kind of store", ref)
		}
	}
}

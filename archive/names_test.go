package archive

import "testing"

// TestFamiliar: a tag in docker's familiar form, as docker images prints it, reads back as
// the same name. The inputs below are where dedupe's tag normaliser (it dropped the prefixes
// localhost/, docker.io/, index.docker.io/ and library/ in turn) and Familiar (it dropped
// library/ before anything) differed from it, and what each gave.
func TestFamiliar(t *testing.T) {
	for _, c := range []struct{ in, want, was string }{
		{"docker.io/library/x:1", "x:1", "x:1 both"},
		{"index.docker.io/library/x:1", "x:1", "x:1 both"},
		{"library/x:1", "x:1", "x:1 both"},
		{"docker.io/u/x:1", "u/x:1", "u/x:1 both"},
		{"127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1", "dedupe and Familiar alike"},
		{"localhost/x:1", "localhost/x:1", "dedupe: x:1, docker.io's x"},
		{"localhost/library/x:1", "localhost/library/x:1", "dedupe: x:1"},
		{"docker.io/library/u/x:1", "library/u/x:1", "u/x:1 both: another repository"},
		{"docker.io/localhost/x:1", "docker.io/localhost/x:1", "localhost/x:1 both: the localhost registry's"},
	} {
		tag, err := ParseTag(c.in)
		if err != nil {
			t.Fatal(err)
		}
		got := Familiar(tag)
		if got != c.want {
			t.Errorf("Familiar(%s) = %s, want %s (was %s)", c.in, got, c.want, c.was)
		}
		if again, err := ParseTag(got); err != nil || again.Name() != tag.Name() {
			t.Errorf("%s reads back as %s, want %s: %v", got, again.Name(), tag.Name(), err)
		}
	}
}

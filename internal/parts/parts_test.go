package parts

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4G": 4e9, "700M": 700e6, "2Mi": 2 << 20, "1Gi": 1 << 30, "5000000": 5e6} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "4X", "-1G", "1k", "G"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func write(t *testing.T, path string, data []byte, partSize int64) {
	t.Helper()
	w, err := Create(path, partSize, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func readAll(path string) ([]byte, error) {
	r, _, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestSplitRoundTrip(t *testing.T) {
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	dir := t.TempDir()
	path := filepath.Join(dir, "b.tar")
	write(t, path, data, 2<<20)
	names, _ := filepath.Glob(path + ".*")
	if len(names) != 4 { // .000 .001 .002 .sha256
		t.Fatalf("wrote %v", names)
	}
	for _, p := range []string{path, path + ".000"} {
		got, err := readAll(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("reading %s: %v", p, err)
		}
	}

	t.Run("damaged part", func(t *testing.T) {
		part := path + ".001"
		orig, _ := os.ReadFile(part)
		bad := bytes.Clone(orig)
		bad[100] ^= 1
		os.WriteFile(part, bad, 0o644)
		defer os.WriteFile(part, orig, 0o644)
		if _, err := readAll(path); !errors.Is(err, ErrPart) || !bytes.Contains([]byte(err.Error()), []byte("b.tar.001 is damaged")) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing part", func(t *testing.T) {
		os.Rename(path+".001", path+".x")
		defer os.Rename(path+".x", path+".001")
		if _, err := readAll(path); !errors.Is(err, ErrPart) || !bytes.Contains([]byte(err.Error()), []byte("b.tar.001 is missing")) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(filepath.Join(dir, "b.tar"), 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(make([]byte, 3<<20))
	w.Abort()
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
}

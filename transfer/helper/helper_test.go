package helper

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
)

// fakeServer records what it is asked.
type fakeServer struct {
	got   []byte
	repos []string
	fail  error
}

func (f *fakeServer) Load(_ context.Context, req Request, index func(*content.Index) error, delta func() (io.Reader, error), note func(string)) ([]string, error) {
	f.repos = req.Repos // before the delta comes
	note("indexed by the fake")
	if err := index(content.NewIndex()); err != nil {
		return nil, err
	}
	r, err := delta()
	if err != nil {
		return nil, err
	}
	f.got, err = io.ReadAll(r)
	note("loaded by the fake")
	if f.fail != nil {
		return nil, f.fail
	}
	return []string{"app:1"}, err
}

// exchange runs Serve on what the near side writes (hello, request, then rest, where Serve
// reads it) and returns what Serve wrote and returned.
func exchange(t *testing.T, dir string, s Server, near string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Serve(t.Context(), strings.NewReader(near), &out, dir, filepath.Join(dir, "self"), s)
	return out.String(), err
}

// request is the hello and the messages the near side writes.
func request(t *testing.T, msgs ...Request) string {
	var b bytes.Buffer
	for _, m := range msgs {
		if err := writeMsg(&b, m); err != nil {
			t.Fatal(err)
		}
	}
	return helloLine(Version) + b.String()
}

// replies reads the hello and the replies Serve wrote.
func replies(t *testing.T, out string) []Reply {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(out))
	if v, err := readHello(br, 0); err != nil || v != Version {
		t.Fatalf("hello: %d, %v in %q", v, err, out)
	}
	var reps []Reply
	for {
		var rep Reply
		if err := readMsg(br, &rep); err != nil {
			if errors.Is(err, io.EOF) {
				return reps
			}
			t.Fatalf("%v in %q", err, out)
		}
		reps = append(reps, rep)
		if rep.Size > 0 {
			io.CopyN(io.Discard, br, rep.Size)
		}
	}
}

func TestServeRefusesVersions(t *testing.T) {
	for _, in := range []string{"ferry-helper 2\n", "ferry-helper 4\n", "ferry-helper 0\n", "something else\n", "ferry-helper 3"} {
		s := &fakeServer{}
		out, err := exchange(t, t.TempDir(), s, in+`{"op":"load"}`+"\n")
		if err == nil {
			t.Errorf("%q: served", in)
		}
		known := in == "ferry-helper 2\n" || in == "ferry-helper 4\n" // versions, not this one
		if known && (!errors.Is(err, ErrVersion) || !strings.HasPrefix(out, "ferry-helper refused: protocol version "+strings.TrimSpace(in[len(hello):]))) {
			t.Errorf("%q: %v, wrote %q", in, err, out)
		}
		if !known && out != "" {
			t.Errorf("%q: wrote %q", in, out)
		}
	}
}

func TestServeRefusesRequests(t *testing.T) {
	for _, req := range []string{`{"op":"load","store":"docker"}` + "\n" + `{"digest":"../x","size":3}`, `{"op":"rm","store":"docker"}`} {
		out, err := exchange(t, t.TempDir(), &fakeServer{}, helloLine(Version)+req+"\n")
		if reps := replies(t, out); err != nil || len(reps) != 1 || reps[0].Error == "" {
			t.Errorf("%s: %v, %+v", req, err, reps)
		}
	}
	if _, err := exchange(t, t.TempDir(), &fakeServer{}, helloLine(Version)+`{"op":"load","rm":"-rf"}`+"\n"); err == nil {
		t.Error("a request with a field the protocol lacks was taken")
	}
}

// TestServeIndex: a load that asks for the store's index gets it first, with what the store
// said making it; the near side that then goes stops the load.
func TestServeIndex(t *testing.T) {
	s := &fakeServer{}
	out, err := exchange(t, t.TempDir(), s, request(t, Request{Op: OpLoad, Store: "docker", Index: true}))
	if err == nil || s.got != nil {
		t.Fatalf("no delta named: %v, loaded %d bytes", err, len(s.got))
	}
	br := bufio.NewReader(strings.NewReader(out))
	readHello(br, 0)
	var rep Reply
	if err := readMsg(br, &rep); err != nil || rep.Size == 0 || len(rep.Notes) != 1 {
		t.Fatalf("%+v, %v", rep, err)
	}
	if _, err := readIndex(io.LimitReader(br, rep.Size)); err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("after the index: %q", rest)
	}
}

// TestServeLoadResumes: a delta cut short stays, and the next load of the same delta is
// asked for the rest only; a delta whose bytes do not hash to its name is dropped.
func TestServeLoadResumes(t *testing.T) {
	dir := t.TempDir()
	delta := bytes.Repeat([]byte("content delta "), 1000)
	sum := sha256.Sum256(delta)
	load := Request{Op: OpLoad, Store: "docker", Repos: []string{"app"}}
	named := Request{Digest: hex.EncodeToString(sum[:]), Size: int64(len(delta))}
	s := &fakeServer{}
	if _, err := exchange(t, dir, s, request(t, load)); err == nil || s.got != nil || len(s.repos) != 1 {
		t.Fatalf("no delta named: %v, loaded %d bytes, repos %v", err, len(s.got), s.repos)
	}
	if _, err := exchange(t, dir, s, request(t, load, named)+string(delta[:5000])); err == nil || s.got != nil {
		t.Fatalf("a cut delta: %v, loaded %d bytes", err, len(s.got))
	}
	out, err := exchange(t, dir, s, request(t, load, named)+string(delta[5000:]))
	reps := replies(t, out)
	if err != nil || len(reps) != 2 || reps[0].Offset != 5000 || reps[1].Loaded[0] != "app:1" || strings.Join(reps[1].Notes, "; ") != "indexed by the fake; loaded by the fake" {
		t.Fatalf("%v: %+v", err, reps)
	}
	if !bytes.Equal(s.got, delta) {
		t.Fatal("the server did not get the delta")
	}
	if left, _ := os.ReadDir(filepath.Join(dir, deltasDir)); len(left) != 0 {
		t.Errorf("a loaded delta stays: %v", left)
	}

	wrong := bytes.Repeat([]byte("x"), len(delta))
	out, _ = exchange(t, dir, s, request(t, load, named)+string(wrong))
	if reps := replies(t, out); len(reps) != 2 || !reps[1].Rebuild || !strings.Contains(reps[1].Error, "hashes to") {
		t.Fatalf("%+v", reps)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, deltasDir)); len(left) != 0 {
		t.Errorf("a delta of the wrong bytes stays: %v", left)
	}

	s.fail = archive.ErrMissingBlob
	out, _ = exchange(t, dir, s, request(t, load, named)+string(delta))
	if reps := replies(t, out); len(reps) != 2 || !reps[1].Rebuild {
		t.Fatalf("a delta the store cannot rebuild: %+v", reps)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * unused)
	self, other, recent := filepath.Join(dir, strings.Repeat("a", 64)), filepath.Join(dir, strings.Repeat("b", 64)), filepath.Join(dir, strings.Repeat("c", 64))
	stale := filepath.Join(dir, deltasDir, strings.Repeat("d", 64))
	for _, d := range []string{self, other, recent, filepath.Dir(stale)} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(stale, nil, 0o600)
	for _, p := range []string{self, other, stale} {
		os.Chtimes(p, old, old)
	}
	prune(dir, self, time.Now())
	for p, want := range map[string]bool{self: true, other: false, recent: true, stale: false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: kept %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	if fi, _ := os.Stat(self); time.Since(fi.ModTime()) > time.Minute {
		t.Error("the running helper's directory is not marked used")
	}
}

func TestRunsOn(t *testing.T) {
	b := &Binary{OS: "linux", Arch: "amd64"}
	for uname, ok := range map[string]bool{"Linux x86_64\n": true, "Linux aarch64": false, "Darwin x86_64": false, "": false, "This account is not available": false} {
		if err := b.runsOn(uname); (err == nil) != ok || (err != nil && !errors.Is(err, ErrUnavailable)) {
			t.Errorf("%q: %v", uname, err)
		}
	}
}

func TestReadHello(t *testing.T) {
	noise := "Welcome!\nlast login\n"
	if v, err := readHello(bufio.NewReader(strings.NewReader(noise+"ferry-helper 1\n")), 4096); err != nil || v != 1 {
		t.Errorf("after a shell's noise: %d, %v", v, err)
	}
	if _, err := readHello(bufio.NewReader(strings.NewReader(strings.Repeat("x\n", 3000)+"ferry-helper 1\n")), 4096); err == nil {
		t.Error("read past its bound")
	}
	if _, err := readHello(bufio.NewReader(strings.NewReader("ferry-helper refused: no\n")), 0); !errors.Is(err, ErrVersion) {
		t.Errorf("a refusal: %v", err)
	}
}

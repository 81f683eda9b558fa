// Package fakedocker is a Docker Engine API server for tests, on a unix socket that a real
// sshd forwards as it forwards dockerd's: an in-memory daemon (store/mem) behind the part
// of the API ferry uses, answering as dockerd does, or lying as a test says (what a real
// daemon cannot be made to do). Nothing here is for ferry itself.
package fakedocker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/mem"
)

// Lies are what a Server answers wrong. (A load that reports images it does not keep is
// the daemon's mem.Faults.Forget.)
type Lies struct {
	// Images adds that many images to every listing, each its own ID, none of which
	// inspects.
	Images int
	// Trickle, when not 0, answers GET /info one byte at a time, a byte every Trickle.
	Trickle time.Duration
	// Silent loads read their input whole, then answer nothing until the client gives up.
	Silent bool
	// Progress, when not 0, has loads report progress every Progress for Slow before they
	// answer.
	Progress, Slow time.Duration
	// LoadError, if set, is the error message every load fails with.
	LoadError string
	// Loaded, if set, is the line every load reports for the images it loaded.
	Loaded string
	// Fail, if set, is the message every request but /_ping fails with (HTTP 500).
	Fail string
}

// A Server is a fake docker daemon.
type Server struct {
	Socket string
	Daemon *mem.Daemon
	Lies   Lies

	inspects atomic.Int64
	srv      *http.Server
}

// Start serves a classic-store daemon named name on a unix socket at path until the test
// ends.
func Start(t testing.TB, path, name string) *Server {
	t.Helper()
	s := &Server{Socket: path, Daemon: mem.NewDaemon(name, false, true)}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("fakedocker: %v", err)
	}
	s.srv = &http.Server{Handler: s}
	go s.srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Inspects counts the image inspections the server answered, found or not.
func (s *Server) Inspects() int64 { return s.inspects.Load() }

// versioned is an API path with its version: /v1.41/info.
var versioned = regexp.MustCompile(`^/v1\.[0-9]+(/.*)$`)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if m := versioned.FindStringSubmatch(path); m != nil {
		path = m[1]
	}
	name, rest, _ := strings.Cut(strings.TrimPrefix(path, "/images/"), "/")
	switch {
	case s.Lies.Fail != "" && path != "/_ping":
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"message": s.Lies.Fail}) //nolint:errcheck
	case path == "/_ping":
		w.Header().Set("API-Version", "1.41")
		io.WriteString(w, "OK")
	case path == "/info":
		s.info(w)
	case path == "/images/json":
		s.list(w)
	case path == "/images/load" && r.Method == http.MethodPost:
		s.load(w, r)
	case strings.HasPrefix(path, "/images/") && rest == "json":
		s.inspect(w, name)
	case strings.HasPrefix(path, "/images/") && rest == "" && r.Method == http.MethodDelete:
		s.remove(w, name)
	default:
		http.Error(w, `{"message":"page not found"}`, http.StatusNotFound)
	}
}

func (s *Server) info(w http.ResponseWriter) {
	body := `{"Name":"fake","ServerVersion":"24.0.7","Driver":"overlay2","OSType":"linux","Architecture":"x86_64"}`
	if s.Lies.Trickle == 0 {
		io.WriteString(w, body)
		return
	}
	for i := range len(body) {
		if _, err := io.WriteString(w, body[i:i+1]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		time.Sleep(s.Lies.Trickle)
	}
}

type summary struct {
	ID       string `json:"Id"`
	RepoTags []string
	Labels   map[string]string
}

func (s *Server) list(w http.ResponseWriter) {
	var list []summary
	for _, img := range s.Daemon.Images() {
		sum := summary{ID: img.ID.String(), RepoTags: img.Tags, Labels: map[string]string{}}
		if img.Step {
			sum.Labels[store.StepLabel] = ""
		}
		list = append(list, sum)
	}
	for i := range s.Lies.Images {
		list = append(list, summary{ID: fmt.Sprintf("sha256:%064x", i), RepoTags: []string{fmt.Sprintf("junk:%d", i)}})
	}
	json.NewEncoder(w).Encode(list) //nolint:errcheck
}

func (s *Server) find(name string) (mem.Image, bool) {
	for _, img := range s.Daemon.Images() {
		if img.ID.String() == name || slices.Contains(img.Tags, name) {
			return img, true
		}
	}
	return mem.Image{}, false
}

func (s *Server) inspect(w http.ResponseWriter, name string) {
	s.inspects.Add(1)
	img, ok := s.find(name)
	if !ok {
		http.Error(w, `{"message":"No such image: `+name+`"}`, http.StatusNotFound)
		return
	}
	var layers []string
	for _, d := range img.DiffIDs {
		layers = append(layers, d.String())
	}
	json.NewEncoder(w).Encode(map[string]any{"Id": img.ID.String(), "RepoTags": img.Tags, "Os": "linux", //nolint:errcheck
		"Architecture": "amd64", "RootFS": map[string]any{"Type": "layers", "Layers": layers}})
}

func (s *Server) remove(w http.ResponseWriter, name string) {
	id, err := v1.NewHash(name)
	if err != nil || !s.Daemon.Remove(id) {
		http.Error(w, `{"message":"No such image"}`, http.StatusNotFound)
		return
	}
	json.NewEncoder(w).Encode([]map[string]string{{"Deleted": name}}) //nolint:errcheck
}

// load loads the stream into the daemon and answers as docker does, one JSON message a
// line, unless the lies say otherwise.
func (s *Server) load(w http.ResponseWriter, r *http.Request) {
	enc := json.NewEncoder(w)
	loaded, err := s.Daemon.LoadStream(r.Context(), r.Body)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case s.Lies.Silent:
		<-r.Context().Done()
		return
	case s.Lies.LoadError != "":
		err = errors.New(s.Lies.LoadError)
	}
	for start := time.Now(); s.Lies.Progress > 0 && time.Since(start) < s.Lies.Slow; time.Sleep(s.Lies.Progress) {
		enc.Encode(map[string]any{"status": "Loading layer", "progressDetail": map[string]int{"current": 1, "total": 2}}) //nolint:errcheck
		w.(http.Flusher).Flush()
	}
	if err != nil {
		enc.Encode(map[string]any{"errorDetail": map[string]string{"message": err.Error()}, "error": err.Error()}) //nolint:errcheck
		return
	}
	for _, ref := range loaded {
		line := "Loaded image: " + ref
		switch {
		case s.Lies.Loaded != "":
			line = s.Lies.Loaded
		case strings.HasPrefix(ref, "sha256:"):
			line = "Loaded image ID: " + ref
		}
		enc.Encode(map[string]string{"stream": line + "\n"}) //nolint:errcheck
	}
}

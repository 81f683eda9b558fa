package docker_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/fakedocker"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store/docker"
	"github.com/ferrytool/ferry/store/storetest"
	"github.com/ferrytool/ferry/transfer"
)

// TestLyingDaemon: a docker daemon on a host that answers what it likes, reached as ferry
// reaches dockerd (its socket forwarded by a real sshd), neither holds ferry past its
// deadline nor makes it inspect without bound, and what it says reaches messages bounded
// and escaped.
func TestLyingDaemon(t *testing.T) {
	ssh := storetest.NewSSH(t)
	host := ssh.Host(t)
	_, imgs := testenv.RandomImages(t, 64<<10, 16<<10, 1)
	var bundle bytes.Buffer
	b, src := &archive.Bundle{}, archive.V1Source{}
	if _, err := b.AddImage(imgs[0], []string{"app:1"}, src); err != nil {
		t.Fatal(err)
	}
	if err := archive.Write(t.Context(), &bundle, b, src, archive.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const stall = 2 * time.Second
	// open serves a fake daemon that lies as told and opens it as a store on the host.
	open := func(t *testing.T, lies fakedocker.Lies) (*docker.Store, *fakedocker.Server) {
		t.Helper()
		socket := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "-")[:24]+".sock")
		srv := fakedocker.Start(t, socket, t.Name())
		srv.Lies = lies
		opts := ssh.Options
		opts.Stall = stall
		st, done, err := transfer.OpenStore(t.Context(), "docker", "ssh://"+host+socket, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(done)
		return st.(*docker.Store), srv
	}
	load := func(st *docker.Store) ([]string, error) {
		return st.LoadStream(t.Context(), bytes.NewReader(bundle.Bytes()))
	}
	// bounded fails unless err is a message of at most max bytes with no control character.
	bounded := func(t *testing.T, err error, max int) {
		t.Helper()
		if err == nil || len(err.Error()) > max || strings.ContainsFunc(err.Error(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Errorf("error of %d bytes, want at most %d, printable: %.300q", len(fmt.Sprint(err)), max, err)
		}
	}

	t.Run("a listing of 50000 images", func(t *testing.T) {
		st, srv := open(t, fakedocker.Lies{Images: 50000})
		_, err := st.Inventory(t.Context())
		if err == nil || !strings.Contains(err.Error(), "lists 50000 images") || srv.Inspects() != 0 {
			t.Errorf("inventory: %v after %d inspections; want the listing refused before any", err, srv.Inspects())
		}
	})

	t.Run("an answer at a byte a second", func(t *testing.T) {
		st, _ := open(t, fakedocker.Lies{Trickle: time.Second})
		_, err := st.Info(t.Context())
		if !errors.Is(err, docker.ErrStalled) || !strings.Contains(err.Error(), "GET /v1.41/info") {
			t.Errorf("info: %v, want it not answered in time", err)
		}
	})

	t.Run("a silent load", func(t *testing.T) {
		st, _ := open(t, fakedocker.Lies{Silent: true})
		if _, err := load(st); !errors.Is(err, docker.ErrStalled) || !strings.Contains(err.Error(), "no progress on POST") {
			t.Errorf("load: %v, want it ended for making no progress", err)
		}
	})

	t.Run("a slow load that reports progress", func(t *testing.T) {
		st, srv := open(t, fakedocker.Lies{Progress: stall / 10, Slow: 2 * stall})
		if loaded, err := load(st); err != nil || len(loaded) != 1 || len(srv.Daemon.Tags()) != 1 {
			t.Errorf("load: %v %v, want app:1 loaded", loaded, err)
		}
	})

	t.Run("a 1 MiB error message", func(t *testing.T) {
		st, _ := open(t, fakedocker.Lies{Fail: "\x1b[2J" + strings.Repeat("x", 1<<20)})
		_, err := st.Info(t.Context())
		bounded(t, err, 2<<10)
		if !strings.Contains(fmt.Sprint(err), `\x1b[2J`) {
			t.Errorf("info: %.200q, want the escape shown escaped", err)
		}
	})

	t.Run("a load error of escapes", func(t *testing.T) {
		st, _ := open(t, fakedocker.Lies{LoadError: "\x1b]0;owned\x07" + strings.Repeat("\x1b[1m", 40<<10)})
		_, err := load(st)
		bounded(t, err, 2<<10)
	})

	t.Run("a loaded name of escapes", func(t *testing.T) {
		st, _ := open(t, fakedocker.Lies{Loaded: "Loaded image: \x1b[31mapp:1"})
		_, err := load(st)
		bounded(t, err, 512)
		if !strings.Contains(fmt.Sprint(err), "no image reference") {
			t.Errorf("load: %v, want the name refused", err)
		}
	})
}

package transfer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/docker"
)

// sendEnv is a source dockerd, an SSH key and a known_hosts file that the remote hosts
// added to it accept and know.
type sendEnv struct {
	src   *testenv.Docker
	key   ssh.PublicKey
	known string
	opts  SendOptions
}

// remoteHost is a throwaway dockerd behind a throwaway sshd: the sshd runs as root on this
// machine, so the "remote" socket is the dockerd's own, named in the destination.
type remoteHost struct {
	docker *testenv.Docker
	sshd   *testenv.SSHD
	dest   string
}

func newSendEnv(t *testing.T) *sendEnv {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("SSH_AUTH_SOCK", "")
	pub, key := testenv.NewKey(t, dir, "id", "")
	src := testenv.StartDocker(t)
	client, err := docker.New(src.Host)
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	return &sendEnv{src: src, key: pub, known: known, opts: SendOptions{
		Store:    docker.NewStore(client),
		Compress: compress.Compression{Codec: compress.Gzip, Mode: compress.Follow},
		Options:  Options{SSH: sshconn.Config{ConfigFile: "none", KnownHosts: known, Identities: []string{key}}},
	}}
}

func (e *sendEnv) addHost(t *testing.T) *remoteHost {
	t.Helper()
	return e.addHostFlavor(t, testenv.Docker2010)
}

// addHostFlavor is addHost with a docker daemon of flavor f.
func (e *sendEnv) addHostFlavor(t *testing.T, f testenv.Flavor) *remoteHost {
	t.Helper()
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{e.key}})
	h := &remoteHost{docker: testenv.StartDockerFlavor(t, f), sshd: sshd}
	h.dest = "ssh://root@" + h.sshd.Addr + strings.TrimPrefix(h.docker.Host, "unix://")
	e.know(t, sshd)
	return h
}

// know adds sshd's host key to the known_hosts file.
func (e *sendEnv) know(t *testing.T, sshd *testenv.SSHD) {
	t.Helper()
	f, err := os.OpenFile(e.known, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(sshd.KnownHostsLine() + "\n"); err != nil {
		t.Fatal(err)
	}
}

func (e *sendEnv) send(t *testing.T, images []string, hosts ...*remoteHost) ([]HostResult, error) {
	t.Helper()
	var dests []string
	for _, h := range hosts {
		dests = append(dests, h.dest)
	}
	return e.sendTo(t, images, dests, e.opts)
}

func (e *sendEnv) sendTo(t *testing.T, images, dests []string, opts SendOptions) ([]HostResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return Send(ctx, images, dests, opts)
}

func mustSend(t *testing.T, e *sendEnv, images []string, hosts ...*remoteHost) []HostResult {
	t.Helper()
	res, err := e.send(t, images, hosts...)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	return res
}

func randomFile(t *testing.T, size int) string {
	b := make([]byte, size)
	rand.Read(b)
	return string(b)
}

func TestSend(t *testing.T) {
	e := newSendEnv(t)
	e.src.BusyboxImage(t, "base:1", nil)
	e.src.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "app 1\n"})
	e.src.DeriveImage(t, "app:2", "base:1", map[string]string{"marker": "app 2\n"})
	e.src.DeriveImage(t, "big:1", "base:1", map[string]string{"marker": "big\n", "data": randomFile(t, 8<<20)})
	a, b, c := e.addHost(t), e.addHost(t), e.addHost(t)

	var cold HostResult
	t.Run("cold", func(t *testing.T) {
		cold = mustSend(t, e, []string{"app:1"}, a)[0]
		if cold.Layers != 2 || cold.Skipped != 0 || cold.Sent < 500<<10 || len(cold.Loaded) != 1 || cold.Loaded[0] != "app:1" {
			t.Errorf("cold send: %+v", cold)
		}
		if got := a.docker.Cat(t, "app:1", "/marker"); got != "app 1\n" {
			t.Errorf("/marker = %q", got)
		}
	})

	t.Run("cold host streamed to as the source is read", func(t *testing.T) {
		// docker on the containerd image store whose containerd the SSH user cannot reach
		// (docker's socket is theirs, as for the docker group; containerd's is root's): it
		// takes complete images through the Docker API, as the source is read.
		d := testenv.StartDockerFlavor(t, testenv.Docker26Containerd)
		sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{e.key}, User: "ferrytest"})
		e.know(t, sshd)
		d.ShareSocket(t)
		sock := strings.TrimPrefix(d.Host, "unix://")
		opts := e.opts
		var mu sync.Mutex
		var read, readAtFirstSend int64 = 0, -1
		opts.Read.Progress = func(done, _ int64) {
			mu.Lock()
			read = done
			mu.Unlock()
		}
		opts.Progress = func(_ string, sent, _ int64) {
			mu.Lock()
			if sent > 0 && readAtFirstSend < 0 {
				readAtFirstSend = read
			}
			mu.Unlock()
		}
		res, err := e.sendTo(t, []string{"big:1"}, []string{"ssh://ferrytest@" + sshd.Addr + sock}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Complete == "" || strings.Contains(res[0].Store, "containerd") {
			t.Errorf("%+v, want complete images through the Docker API", res[0])
		}
		if readAtFirstSend < 0 || readAtFirstSend >= read {
			t.Errorf("the host got its first bytes after %d of %d source bytes were read, want before the end", readAtFirstSend, read)
		}
		if got := d.Cat(t, "big:1", "/marker"); got != "big\n" {
			t.Errorf("/marker = %q", got)
		}
	})

	t.Run("warm", func(t *testing.T) {
		mustSend(t, e, []string{"base:1"}, b)
		warm := mustSend(t, e, []string{"app:1"}, b)[0]
		// The base layer stays behind: what travels is metadata and the one-file layer.
		if warm.Layers != 2 || warm.Skipped != 1 || warm.Sent > 64<<10 || warm.Full < cold.Sent {
			t.Errorf("warm send: %+v (cold sent %d)", warm, cold.Sent)
		}
		if got := b.docker.Cat(t, "app:1", "/marker"); got != "app 1\n" {
			t.Errorf("/marker = %q", got)
		}
	})

	t.Run("connection cut mid-send keeps the steps loaded", func(t *testing.T) {
		ref := "base:1"
		for i := range 4 { // four layers of 8 MiB: steps of base and two layers, then two layers
			next := fmt.Sprintf("layers:%d", i+1)
			e.src.DeriveImage(t, next, ref, map[string]string{fmt.Sprintf("data%d", i): randomFile(t, 8<<20), "marker": "layers\n"})
			ref = next
		}
		steps := func() string {
			out, _ := c.docker.RunErr("images", "-a", "-q", "--filter", "label="+store.StepLabel)
			return strings.TrimSpace(out)
		}
		opts := e.opts
		var cut atomic.Bool
		opts.Progress = func(host string, sent, _ int64) {
			// Into the second step: hold it until the first has loaded, then cut. Only the
			// first call waits: the first step's own writes (its end) report too.
			if host == c.dest && sent > 18<<20 && cut.CompareAndSwap(false, true) {
				for deadline := time.Now().Add(time.Minute); steps() == "" && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
				}
				c.sshd.KillSessions()
			}
		}
		// b, which holds the base, gets the image whole meanwhile; c is cut.
		_, err := e.sendTo(t, []string{ref}, []string{b.dest, c.dest}, opts)
		var se *SendError
		if !errors.As(err, &se) || len(se.Failed) != 1 || se.Failed[0].Host != c.dest ||
			!strings.Contains(err.Error(), "sending again sends only the rest") {
			t.Fatalf("got %v, want c to fail with a cut stream", err)
		}
		if steps() == "" {
			t.Fatal("no step image on the host after the cut")
		}
		if out := c.docker.Run(t, "images", "--format", "{{.Repository}}:{{.Tag}}"); strings.Contains(out, "layers") {
			t.Fatalf("the image was named after a cut send:\n%s", out)
		}
		// Each host takes up from where it is: b has it all, c lacks the last two layers.
		res := mustSend(t, e, []string{ref}, b, c)
		if done, again := res[0], res[1]; done.Sent > 64<<10 || again.Sent > again.Full*6/10 {
			t.Errorf("sent %d (b) and %d of %d bytes (c) again after the cut, want nothing and c's last two layers", done.Sent, again.Sent, again.Full)
		}
		if got := c.docker.Cat(t, ref, "/data3"); len(got) != 8<<20 {
			t.Errorf("/data3 has %d bytes", len(got))
		}
		if left := steps(); left != "" {
			t.Errorf("step images left after the send: %s", left)
		}
		if out := c.docker.Run(t, "images", "-a", "-q", "--filter", "dangling=true"); strings.TrimSpace(out) != "" {
			t.Errorf("untagged images after the send: %s", out)
		}
	})

	t.Run("three hosts, one down", func(t *testing.T) {
		down := "root@127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		res, err := e.sendTo(t, []string{"app:2"}, []string{a.dest, down, c.dest}, e.opts)
		var se *SendError
		if !errors.As(err, &se) || se.Hosts != 3 || len(se.Failed) != 1 || se.Failed[0].Host != down ||
			!strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("got %v, want %s to fail", err, down)
		}
		for _, h := range []*remoteHost{a, c} {
			if got := h.docker.Cat(t, "app:2", "/marker"); got != "app 2\n" {
				t.Errorf("/marker = %q", got)
			}
		}
		if res[0].Skipped != 1 || res[2].Skipped != 1 {
			t.Errorf("hosts holding the base got it again: %+v", res)
		}
	})

	t.Run("host to host, all images", func(t *testing.T) {
		opts := e.opts
		opts.FromHost, opts.All, opts.Store = c.dest, true, nil
		res, err := e.sendTo(t, nil, []string{b.dest}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(res[0].Loaded) != 2 || res[0].Skipped != 5 {
			t.Errorf("%+v, want layers:4 and app:2 with all but app:2's layer left out (b holds layers:4)", res[0])
		}
		if got := b.docker.Cat(t, "layers:4", "/marker"); got != "layers\n" {
			t.Errorf("/marker = %q", got)
		}
	})

	t.Run("no docker on the host", func(t *testing.T) {
		dest := "ssh://root@" + a.sshd.Addr + "/nonexistent/docker.sock"
		_, err := e.sendTo(t, []string{"app:1"}, []string{dest}, e.opts)
		if !errors.Is(err, sshconn.ErrNoSocket) || !strings.Contains(err.Error(), "is docker installed") {
			t.Fatalf("got %v, want ErrNoSocket", err)
		}
	})

	t.Run("permission denied on the socket", func(t *testing.T) {
		sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{e.key}, User: "ferrytest"})
		e.know(t, sshd)
		sock := strings.TrimPrefix(a.docker.Host, "unix://")
		if err := os.Chmod(filepath.Dir(sock), 0o711); err != nil { // the socket itself stays root's
			t.Fatal(err)
		}
		_, err := e.sendTo(t, []string{"app:1"}, []string{"ssh://ferrytest@" + sshd.Addr + sock}, e.opts)
		if !errors.Is(err, sshconn.ErrSocketDenied) || !strings.Contains(err.Error(), "docker group") {
			t.Fatalf("got %v, want ErrSocketDenied", err)
		}
	})
}

// Nothing is dialed before every reference checks out.
func TestSendChecksFirst(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	host := "root@" + l.Addr().String()
	for _, c := range []struct {
		images, hosts []string
		from          string
	}{
		{[]string{"Bad:Ref"}, []string{host}, ""},
		{[]string{"app:1"}, []string{host, "-oProxyCommand=x"}, ""},
		{[]string{"app:1"}, []string{host}, "root@host;id"},
	} {
		_, err := Send(context.Background(), c.images, c.hosts, SendOptions{FromHost: c.from})
		if !errors.Is(err, ErrInvalidReference) {
			t.Errorf("%v to %v from %q: got %v, want ErrInvalidReference", c.images, c.hosts, c.from, err)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections before the references were checked", n)
	}
}

// TestSendZstd: with --compress auto, docker 26 gets zstd (cold, the stream as it is read;
// warm, its own bundle) and docker 20.10 gzip; both load and run what they got. zstd asked of
// a 20.10 host is refused with what to do instead.
func TestSendZstd(t *testing.T) {
	e := newSendEnv(t)
	e.opts.Compress.Mode = compress.Auto
	e.src.BusyboxImage(t, "base:1", nil)
	e.src.DeriveImage(t, "app:1", "base:1", map[string]string{"marker": "app 1\n"})
	e.src.DeriveImage(t, "app:2", "base:1", map[string]string{"marker": "app 2\n"})
	new, old := e.addHostFlavor(t, testenv.Docker26Classic), e.addHost(t)
	check := func(res HostResult, h *remoteHost, want compress.Codec, ref, marker string) {
		t.Helper()
		if res.Codec != want {
			t.Errorf("%s got a %s stream, want %s", res.Host, res.Codec, want)
		}
		if got := h.docker.Cat(t, ref, "/marker"); got != marker {
			t.Errorf("%s: /marker = %q", ref, got)
		}
	}
	// Two steps: many files, slow to unpack, then a small layer that arrives at once. docker
	// 26 loads a stream once it reads the end of the archive, which must wait for the first.
	files := map[string]string{}
	for i := range 4000 {
		files[fmt.Sprintf("many/%d", i)] = randomFile(t, 5000)
	}
	e.src.DeriveImage(t, "many:1", "base:1", files)
	e.src.DeriveImage(t, "many:2", "many:1", map[string]string{"marker": "many\n"})
	check(mustSend(t, e, []string{"many:2"}, new)[0], new, compress.Zstd, "many:2", "many\n")
	check(mustSend(t, e, []string{"app:1"}, new)[0], new, compress.Zstd, "app:1", "app 1\n")
	check(mustSend(t, e, []string{"app:1"}, old)[0], old, compress.Gzip, "app:1", "app 1\n")
	both := mustSend(t, e, []string{"app:2"}, new, old) // warm: each its own bundle
	check(both[0], new, compress.Zstd, "app:2", "app 2\n")
	check(both[1], old, compress.Gzip, "app:2", "app 2\n")

	opts := e.opts
	opts.Compress = compress.Compression{Codec: compress.Zstd}
	cold := e.addHost(t)
	for _, h := range []*remoteHost{old, cold} { // warm and cold
		_, err := e.sendTo(t, []string{"app:1"}, []string{h.dest}, opts)
		if err == nil || !strings.Contains(err.Error(), "does not load zstd") {
			t.Fatalf("zstd to docker 20.10: got %v, want a refusal", err)
		}
	}
}

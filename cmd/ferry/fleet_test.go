package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/fakedocker"
	"github.com/ferrytool/ferry/internal/testenv"
	"github.com/ferrytool/ferry/store/mem"
	"github.com/ferrytool/ferry/transfer"
)

// TestHostList: -H @FILE reads one host a line, skipping blank lines and comments, mixes with
// -H HOST, and sends to a host named twice once; a file that cannot be read, or a line that
// is not one printable host, is a usage error naming the file and the line.
func TestHostList(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hosts")
	os.WriteFile(file, []byte("# nodes\nnode1\n\n  node2  \nweb1\n# end\n"), 0o644)
	got, err := hostList([]string{"web1", "@" + file, "node3", "node1"})
	if err != nil || strings.Join(got, " ") != "web1 node1 node2 node3" {
		t.Fatalf("hosts %q, %v", got, err)
	}
	for name, content := range map[string]string{"space": "node1\nnode 2\n", "escape": "node\x1b[2J\n", "nested": "@other\n"} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(content), 0o644)
		_, err := hostList([]string{"@" + path})
		var usage usageError
		if !errors.As(err, &usage) || !strings.Contains(err.Error(), path+":") || strings.Contains(err.Error(), "\x1b") {
			t.Errorf("%s: %v, want a usage error naming the line, quoted", name, err)
		}
	}
	for _, flags := range [][]string{nil, {"@" + filepath.Join(dir, "missing")}, {"@" + filepath.Join(dir, "empty")}} {
		os.WriteFile(filepath.Join(dir, "empty"), []byte("# none\n"), 0o644)
		var usage usageError
		if _, err := hostList(flags); !errors.As(err, &usage) {
			t.Errorf("%q: %v, want a usage error", flags, err)
		}
	}
}

// TestWriteFailedHosts: the file --hosts-failed writes names the failed hosts, and -H @FILE
// reads back exactly those.
func TestWriteFailedHosts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "failed")
	results := []transfer.HostResult{{Host: "a"}, {Host: "root@b:2222", Err: errors.New("down")}, {Host: "c"}, {Host: "ssh://d/run/docker.sock", Err: errors.New("x")}}
	if err := writeFailedHosts(path, results); err != nil {
		t.Fatal(err)
	}
	got, err := hostList([]string{"@" + path})
	if err != nil || strings.Join(got, " ") != "root@b:2222 ssh://d/run/docker.sock" {
		t.Errorf("read back %q, %v", got, err)
	}
}

// fleet is hosts behind real sshds, each a fake docker daemon on a socket of its own that the
// sshd forwards (the way ferry reaches dockerd), and what ferry needs to reach them.
type fleet struct {
	hosts  []string // ssh://root@127.0.0.1:PORT/SOCKET
	env    []string
	args   []string // the SSH flags
	sshds  []*testenv.SSHD
	socket func(i int) string
}

// startFleet starts sshds sshds, and names n hosts spread over them; no daemon answers yet.
func startFleet(t *testing.T, sshds, n int) *fleet {
	t.Helper()
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	var known strings.Builder
	f := &fleet{env: []string{"HOME=" + home, "SSH_AUTH_SOCK="}}
	for range sshds {
		s := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
		f.sshds = append(f.sshds, s)
		known.WriteString(s.KnownHostsLine() + "\n")
	}
	knownPath := filepath.Join(home, "known_hosts")
	os.WriteFile(knownPath, []byte(known.String()), 0o600)
	f.args = []string{"--known-hosts", knownPath, "-i", key}
	dir := t.TempDir()
	f.socket = func(i int) string { return filepath.Join(dir, fmt.Sprintf("h%02d.sock", i)) }
	for i := range n {
		f.hosts = append(f.hosts, "ssh://root@"+f.sshds[i%sshds].Addr+f.socket(i))
	}
	return f
}

// TestSendFleet: 30 hosts from a file, 4 at a time, over three sshds, one host down: the
// others get the image, ferry exits 4, gives one result per host in the summary and in JSON
// progress, and writes the host that failed to --hosts-failed; once it is up, -H @ that
// file sends to it alone and completes the fleet.
func TestSendFleet(t *testing.T) {
	const n, down = 30, 17
	f := startFleet(t, 3, n)
	daemons := map[int]*fakedocker.Server{}
	for i := range n {
		if i != down {
			daemons[i] = fakedocker.Start(t, f.socket(i), fmt.Sprint("host ", i))
		}
	}
	_, imgs := testenv.RandomImages(t, 1<<20, 256<<10, 1)
	bundle := writeBundle(t, imgs[0], "app:1")
	dir := t.TempDir()
	list := filepath.Join(dir, "hosts")
	os.WriteFile(list, []byte("# the fleet\n"+strings.Join(f.hosts[1:], "\n")+"\n\n"+f.hosts[2]+"\n"), 0o644)
	failed := filepath.Join(dir, "failed")
	send := func(hosts ...string) result {
		args := append([]string{"send", bundle, "--jobs", "4", "--hosts-failed", failed, "--progress", "json"}, f.args...)
		for _, h := range hosts {
			args = append(args, "-H", h)
		}
		return ferry(t, f.env, args...)
	}

	r := send(f.hosts[0], "@"+list)
	if r.code != 4 || !strings.Contains(r.stderr, fmt.Sprintf("1 of %d hosts failed: %s", n, f.hosts[down])) {
		t.Fatalf("exit %d, want 4 and host %d failed:\n%s", r.code, down, r.stderr)
	}
	for i, d := range daemons {
		if got := d.Daemon.Tags(); !equal(got, []string{"app:1"}) {
			t.Errorf("host %d holds %v", i, got)
		}
	}
	if rows := strings.Count(r.stdout, "\n") - 1; rows != n || !strings.Contains(r.stdout, "FAILED") {
		t.Errorf("summary of %d rows, want %d (the host named twice once):\n%s", rows, n, r.stdout)
	}
	done := 0
	sc := bufio.NewScanner(strings.NewReader(r.stderr))
	for sc.Scan() {
		var ev struct{ Event string }
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "done" {
			done++
		}
	}
	if done != n+1 {
		t.Errorf("%d JSON done events, want the source's and one per host (%d)", done, n+1)
	}
	if b, _ := os.ReadFile(failed); !strings.Contains(string(b), "\n"+f.hosts[down]+"\n") || strings.Count(string(b), "ssh://") != 1 {
		t.Errorf("--hosts-failed wrote %q", b)
	}

	up := fakedocker.Start(t, f.socket(down), "host down")
	if r := send("@" + failed); r.code != 0 || strings.Count(r.stdout, "\n") != 2 {
		t.Fatalf("re-run of the failed hosts: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := up.Daemon.Tags(); !equal(got, []string{"app:1"}) {
		t.Errorf("the host that was down holds %v", got)
	}
	if b, _ := os.ReadFile(failed); strings.Contains(string(b), "ssh://") {
		t.Errorf("after the re-run, --hosts-failed wrote %q", b)
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// TestSendLyingHosts: hosts whose daemons lie (a load reported and nothing kept, a load that
// goes silent, an error of 160 KiB of terminal escapes, a loaded name of escapes) each fail, named,
// with messages bounded and printable, while the honest hosts get the image.
func TestSendLyingHosts(t *testing.T) {
	f := startFleet(t, 1, 6)
	lies := []fakedocker.Lies{{}, {}, {Silent: true}, {LoadError: "\x1b]0;owned\x07" + strings.Repeat("\x1b[5m!", 1<<15)},
		{Loaded: "Loaded image: \x1b[8mapp:1"}, {}}
	var daemons []*fakedocker.Server
	for i, l := range lies {
		d := fakedocker.Start(t, f.socket(i), fmt.Sprint("host ", i))
		d.Lies = l
		daemons = append(daemons, d)
	}
	daemons[5].Daemon.SetFaults(mem.Faults{Forget: true}) // reports loading, keeps nothing
	_, imgs := testenv.RandomImages(t, 256<<10, 64<<10, 1)
	args := append([]string{"send", writeBundle(t, imgs[0], "app:1"), "--stall-timeout", "2s"}, f.args...)
	for _, h := range f.hosts {
		args = append(args, "-H", h)
	}
	r := ferry(t, f.env, args...)
	if r.code != 4 || !strings.Contains(r.stderr, "4 of 6 hosts failed") {
		t.Fatalf("exit %d, want 4 and four hosts failed:\n%.4000s", r.code, r.stderr)
	}
	for i, want := range []string{"", "", "no progress", "docker daemon:", "no image reference", "does not list app:1"} {
		if want == "" {
			if got := daemons[i].Daemon.Tags(); !equal(got, []string{"app:1"}) {
				t.Errorf("honest host %d holds %v", i, got)
			}
		} else if !strings.Contains(r.stderr, f.hosts[i]+": ") || !strings.Contains(r.stderr, want) {
			t.Errorf("host %d: want it named, failed with %q:\n%.4000s", i, want, r.stderr)
		}
	}
	said := r.stdout // what ferry says: the summary, and its lines on stderr (not the ssh client's)
	for line := range strings.Lines(r.stderr) {
		if strings.HasPrefix(line, "ferry:") {
			said += line
		}
	}
	if len(said) > 16<<10 || strings.ContainsFunc(said, func(r rune) bool { return r < ' ' && r != '\n' || r == 0x7f }) {
		t.Errorf("output of %d bytes, with control characters?\n%.4000q", len(said), said)
	}
}

// TestPrintable: an error that quotes a host is printed with what would act on a terminal
// escaped, lines and tabs kept.
func TestPrintable(t *testing.T) {
	if got, want := printable("host1: \x1b]0;x\x07 said\tno\nhost2: \u202eok ü"), `host1: \x1b]0;x\a said`+"\tno\nhost2: "+`\u202eok ü`; got != want {
		t.Errorf("printable = %q, want %q", got, want)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/ferrytool/ferry/internal/testenv"
)

// TestProgressOnTerminal runs every verb that draws progress bars under a pseudo-terminal
// (util-linux script) and checks how its output on the terminal ends: each bar's last frame
// at 100 %, a newline, then one summary line saying what was done, how many bytes and how
// long, and a newline, so the shell prompt starts a line of its own.
func TestProgressOnTerminal(t *testing.T) {
	scriptBin := testenv.Require(t, "script")
	d := testenv.StartDocker(t)
	twoApps(t, d)
	dir := t.TempDir()
	home := t.TempDir()
	pub, key := testenv.NewKey(t, home, "id", "")
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{AuthorizedKeys: []ssh.PublicKey{pub}})
	known := sshd.KnownHosts(t)
	bundle := filepath.Join(dir, "apps.tar.gz")
	pool := filepath.Join(dir, "pool")
	mustFerry(t, nil, "pool", "init", pool)

	// onTerminal runs ferry with stderr on a pseudo-terminal, stdout to a file, and returns
	// what the terminal showed, with the terminal's \r\n turned back into \n.
	onTerminal := func(t *testing.T, args ...string) string {
		t.Helper()
		line := shellQuote(ferryBin)
		for _, a := range args {
			line += " " + shellQuote(a)
		}
		line += " >" + shellQuote(filepath.Join(t.TempDir(), "stdout"))
		cmd := exec.Command(scriptBin, "-q", "-e", "-c", line, "/dev/null")
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.Host, "HOME="+home, "SSH_AUTH_SOCK=", "COLUMNS=100")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ferry %s on a terminal: %v\n%q", strings.Join(args, " "), err, out)
		}
		return strings.ReplaceAll(string(out), "\r\n", "\n")
	}

	for _, tc := range []struct {
		name    string
		args    []string
		bars    int
		summary string // a regexp for the last line
	}{
		{"save", []string{"save", "app:1", "app:2", "-o", bundle}, 1, `^saved 2 images to .*apps\.tar\.gz: `},
		{"load", []string{"load", "-i", bundle, "--to", "oci:" + filepath.Join(dir, "oci")}, 1, `^loaded 2 images into oci:.*: `},
		{"pool add", []string{"pool", "add", pool, bundle, "--name", "night-1"}, 1, `^added night-1 to the pool: `},
		{"pool export", []string{"pool", "export", pool, "night-1", "-o", filepath.Join(dir, "export.tar")}, 1, `^exported night-1 to .*export\.tar: `},
		{"send", []string{"send", bundle, "-H", "root@" + sshd.Addr, "--to", "oci:" + filepath.Join(dir, "remote"),
			"--known-hosts", known, "-i", key}, 2, `^sent 2 images to 1 of 1 hosts: [0-9.]+ [kMG]?B \(the whole images: [0-9.]+ [kMG]?B\) in [0-9.]+s$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := onTerminal(t, tc.args...)
			if !strings.HasSuffix(out, "\n") {
				t.Fatalf("the output does not end with a newline: %q", out)
			}
			body := strings.TrimSuffix(out, "\n")
			i := strings.LastIndexByte(body, '\n')
			if i < 0 {
				t.Fatalf("no bar before the summary: %q", out)
			}
			last, bars := body[i+1:], body[:i+1]
			if !regexp.MustCompile(tc.summary).MatchString(last) {
				t.Errorf("summary line %q, want %s", last, tc.summary)
			}
			if tc.name != "send" && !regexp.MustCompile(`: [0-9.]+ [kMG]?B in [0-9.]+s \([0-9.]+ [kMG]?B/s\)$`).MatchString(last) {
				t.Errorf("summary line %q says no bytes, time and rate", last)
			}
			// Each bar line is drawn as "\r\x1b[2K" FRAME "\n": the last frames come
			// right before the summary.
			frames := strings.Split(bars, "\x1b[2K")
			if len(frames) <= tc.bars {
				t.Fatalf("%d bar lines drawn, want %d: %q", len(frames)-1, tc.bars, out)
			}
			for _, f := range frames[len(frames)-tc.bars:] {
				if f = strings.TrimSuffix(f, "\r"); !strings.HasSuffix(f, "\n") || !strings.Contains(f, "100%") {
					t.Errorf("last frame %q: want 100 %% and a newline\nwhole output: %q", f, out)
				}
			}
		})
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

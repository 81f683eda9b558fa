package testenv

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is a throwaway OpenSSH server on 127.0.0.1 with its own host key, accepting the
// public keys it was given, forwarding to unix sockets (direct-streamlocal) and serving
// sftp (internal-sftp).
type SSHD struct {
	Addr    string // "127.0.0.1:PORT"
	Port    int
	HostKey ssh.PublicKey
	Home    string // the home directory of the sessions (SSHDOptions.Home)

	dir string
	p   *proc
}

// SSHDOptions say whom a throwaway sshd lets in, and how.
type SSHDOptions struct {
	// AuthorizedKeys may log in as root, or as User.
	AuthorizedKeys []ssh.PublicKey
	// User, if set, is a non-root user (uid 64123, group nogroup, shell /bin/sh) that
	// exists only for this sshd: it runs in a private mount namespace whose /etc/passwd
	// lists the user, so the machine's own user database is untouched.
	User string
	// SetEnv are NAME=VALUE settings sshd puts in the environment of every session (its
	// SetEnv option): how a test points a remote command at throwaway storage while the
	// command itself stays as ferry sends it.
	SetEnv []string
	// UserCA, if set, is a certificate authority whose user certificates may log in
	// (TrustedUserCAKeys), for any user their principals name.
	UserCA ssh.PublicKey
	// HostCA, if set, is the private key file of a certificate authority that signs the
	// server's ed25519 host key for the principal 127.0.0.1 (HostCertificate).
	HostCA string
	// Home is the home directory of whoever logs in (root, or User) in place of theirs;
	// by default, a fresh one of the server's (SSHD.Home), so that what a session keeps in
	// its home stays with the test. With NoexecHome, a fresh tmpfs is mounted there,
	// noexec, seen by the sessions alone.
	Home       string
	NoexecHome bool
	// Config is more sshd_config lines (ForceCommand internal-sftp).
	Config string
}

// TestUID is the uid of SSHDOptions.User.
const TestUID = 64123

// StartSSHD starts /usr/sbin/sshd on a free port of 127.0.0.1, waits until it greets,
// and registers a cleanup that stops it. It needs root, as sshd does.
func StartSSHD(t testing.TB, opts SSHDOptions) *SSHD {
	t.Helper()
	sshd := Require(t, "sshd")
	if os.Geteuid() != 0 {
		if os.Getenv("FERRY_TEST_REQUIRE") == "1" {
			t.Fatal("sshd tests need root (FERRY_TEST_REQUIRE=1)")
		}
		t.Skip("sshd tests need root")
	}
	// sshd reads authorized_keys as the user logging in: keep the directory readable.
	dir, err := os.MkdirTemp("", "ferry-sshd-")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err == nil {
		err = os.MkdirAll("/run/sshd", 0o755) // sshd's privilege separation directory
	}
	if err != nil {
		t.Fatalf("StartSSHD: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	// Two host keys, and KnownHostsLine records only the ed25519 one, which x/crypto
	// prefers less than ECDSA: clients must negotiate the algorithm known_hosts knows.
	hostKey, hostKeyPath := NewKey(t, dir, "host_ed25519", "")
	ecdsaKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("StartSSHD: %v", err)
	}
	ecdsaKeyPath := filepath.Join(dir, "host_ecdsa")
	writeKey(t, ecdsaKeyPath, ecdsaKey, "")
	var authorized strings.Builder
	for _, k := range opts.AuthorizedKeys {
		authorized.Write(ssh.MarshalAuthorizedKey(k))
	}
	s := &SSHD{Port: FreePort(t), HostKey: hostKey, dir: dir}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	config := fmt.Sprintf(`PidFile %[1]s/sshd.pid
AuthorizedKeysFile %[1]s/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
LogLevel DEBUG1
Subsystem sftp internal-sftp
`, dir)
	for _, env := range opts.SetEnv {
		config += "SetEnv " + strconv.Quote(env) + "\n"
	}
	if opts.UserCA != nil {
		writeFile(t, filepath.Join(dir, "user_ca.pub"), string(ssh.MarshalAuthorizedKey(opts.UserCA)), 0o644)
		config += "TrustedUserCAKeys " + filepath.Join(dir, "user_ca.pub") + "\n"
	}
	if opts.HostCA != "" {
		config += "HostCertificate " + Sign(t, opts.HostCA, hostKeyPath, true, "127.0.0.1") + "\n"
	}
	config += opts.Config
	writeFile(t, filepath.Join(dir, "authorized_keys"), authorized.String(), 0o644)
	writeFile(t, filepath.Join(dir, "sshd_config"), config, 0o644)

	args := []string{sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"), "-h", ecdsaKeyPath, "-h", hostKeyPath,
		"-p", strconv.Itoa(s.Port), "-o", "ListenAddress=127.0.0.1"}
	args = append(s.namespace(t, opts), args...)
	s.p = startProc(t, filepath.Join(dir, "sshd.log"), os.Environ(), args[0], args[1:]...)
	t.Cleanup(s.Stop)
	s.p.waitReady(t, "sshd", 20*time.Second, s.greets)
	return s
}

// namespace returns the command that runs sshd in a mount namespace of its own, whose
// /etc/passwd lists opts.User and the sessions' home, and where a noexec home is mounted.
func (s *SSHD) namespace(t testing.TB, opts SSHDOptions) []string {
	s.Home = opts.Home
	if s.Home == "" {
		s.Home = filepath.Join(s.dir, "home")
		err := os.Mkdir(s.Home, 0o755)
		if err == nil && opts.User != "" {
			err = os.Chown(s.Home, TestUID, 65534)
		}
		if err != nil {
			t.Fatalf("StartSSHD: %v", err)
		}
	}
	writeFile(t, filepath.Join(s.dir, "passwd"), passwd(t, opts.User, s.Home), 0o644)
	mount := `mount --bind "$0" /etc/passwd`
	if opts.NoexecHome {
		mount += " && mount -t tmpfs -o noexec,mode=0777 ferry-test-home " + strconv.Quote(s.Home)
	}
	return []string{Require(t, "unshare"), "--mount", "--propagation", "private",
		"sh", "-c", mount + ` && exec "$@"`, filepath.Join(s.dir, "passwd")}
}

// passwd is /etc/passwd as the server's sessions see it: home the home of root, or of
// user, whom it lists.
func passwd(t testing.TB, user, home string) string {
	data, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatalf("StartSSHD: %v", err)
	}
	if user != "" {
		return string(data) + fmt.Sprintf("%s:x:%d:65534:ferry test user:%s:/bin/sh\n", user, TestUID, home)
	}
	lines := strings.SplitAfter(string(data), "\n")
	for i, l := range lines {
		if f := strings.Split(l, ":"); f[0] == "root" && len(f) == 7 {
			f[5] = home
			lines[i] = strings.Join(f, ":")
		}
	}
	return strings.Join(lines, "")
}

// greets returns nil once the server sends its SSH banner.
func (s *SSHD) greets() error {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// KnownHostsLine is the known_hosts line for this server's host key.
func (s *SSHD) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// KnownHosts writes a known_hosts file that knows only this server, and returns its path.
func (s *SSHD) KnownHosts(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Stop stops the server and every session it serves.
func (s *SSHD) Stop() {
	s.KillSessions()
	s.p.stop(5 * time.Second)
}

// KillSessions SIGKILLs the processes serving the server's connections, as a crash or a
// cut network would end them, and leaves the server listening.
func (s *SSHD) KillSessions() {
	for _, pid := range descendants(s.p.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// FreezeSessions stops (SIGSTOP) the processes serving the server's connections, as a
// host that hangs or a network that drops every packet would: the connections stay open
// and nothing answers. Stop still ends them.
func (s *SSHD) FreezeSessions() {
	for _, pid := range descendants(s.p.cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
}

// Sign makes a certificate of the key whose private key file is key (its public key in
// key.pub), signed by the authority whose private key file is ca, with ssh-keygen -s: a
// host certificate if host, else a user certificate, for principals. It returns the
// certificate's path, key-cert.pub, where ssh looks for it.
func Sign(t testing.TB, ca, key string, host bool, principals ...string) string {
	t.Helper()
	args := []string{"-q", "-s", ca, "-I", "ferry-test", "-n", strings.Join(principals, ",")}
	if host {
		args = append(args, "-h")
	}
	out, err := exec.Command(Require(t, "ssh-keygen"), append(args, key+".pub")...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -s: %v\n%s", err, out)
	}
	return key + "-cert.pub"
}

// Authorize lets key log in too.
func (s *SSHD) Authorize(t testing.TB, key ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(s.dir, "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write(ssh.MarshalAuthorizedKey(key))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
}

// Log returns what the server logged so far.
func (s *SSHD) Log() string {
	b, _ := os.ReadFile(s.p.log)
	return string(b)
}

// descendants returns the pids of every process below pid.
func descendants(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		child, err1 := strconv.Atoi(strings.Fields(string(b))[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil {
			children[parent] = append(children[parent], child)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

// NewKey writes a new ed25519 private key, encrypted with passphrase unless it is empty,
// to dir/name (mode 0600) and its public key to dir/name.pub, and returns the public key
// and the private key's path.
func NewKey(t testing.TB, dir, name, passphrase string) (ssh.PublicKey, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("NewKey: %v", err)
	}
	path := filepath.Join(dir, name)
	return writeKey(t, path, priv, passphrase), path
}

// writeKey writes key to path in OpenSSH's format and its public key to path.pub.
func writeKey(t testing.TB, path string, key crypto.Signer, passphrase string) ssh.PublicKey {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(key, filepath.Base(path))
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(key, filepath.Base(path), []byte(passphrase))
	}
	if err != nil {
		t.Fatalf("writing key %s: %v", path, err)
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatalf("writing key %s: %v", path, err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(block)), 0o600)
	writeFile(t, path+".pub", string(ssh.MarshalAuthorizedKey(pub)), 0o644)
	return pub
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}

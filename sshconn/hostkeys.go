package sshconn

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// A HostKeyError says that a host's key is not in known_hosts, differs from the one
// recorded there, or is revoked. It matches ErrUnknownHostKey, ErrHostKeyChanged or
// ErrHostKeyRevoked.
type HostKeyError struct {
	Addr    string                // host:port as dialed
	Alias   string                // the ssh config's HostKeyAlias, if any: the name known_hosts has for the host
	Key     ssh.PublicKey         // the key the host offered
	Known   []knownhosts.KnownKey // what known_hosts records for the host; none if unknown
	File    string                // the known_hosts file a new key would go to
	Revoked *knownhosts.KnownKey  // the @revoked line of the key, or of the certificate's authority
}

func (e *HostKeyError) Is(target error) bool {
	switch {
	case e.Revoked != nil:
		return target == ErrHostKeyRevoked
	case len(e.Known) == 0:
		return target == ErrUnknownHostKey
	}
	return target == ErrHostKeyChanged
}

func (e *HostKeyError) Error() string {
	name := knownhosts.Normalize(e.Addr)
	offered := describeKey(e.Key)
	if e.Revoked != nil {
		return fmt.Sprintf("%v: %s offers %s, which %s:%d marks @revoked (%s): the connection is refused", ErrHostKeyRevoked,
			name, offered, e.Revoked.Filename, e.Revoked.Line, describeKey(e.Revoked.Key))
	}
	if len(e.Known) == 0 && e.Alias != "" {
		return fmt.Sprintf("%v: the host key of %s, known as %s by HostKeyAlias, is not in %s (%s): if that is the host's key, "+
			"add a line for %s with it or pass --accept-new-host-key", ErrUnknownHostKey, name, e.Alias, e.File, offered, e.Alias)
	}
	if e.Alias != "" {
		name = e.Alias
	}
	if len(e.Known) == 0 {
		host, port, _ := net.SplitHostPort(e.Addr)
		return fmt.Sprintf("%v: the host key of %s is not in %s (%s): if that is the host's key, add it with "+
			"`ssh-keyscan -p %s %s >> %s` or pass --accept-new-host-key", ErrUnknownHostKey, name, e.File, offered, port, host, Quote(e.File))
	}
	var known []string
	for _, k := range e.Known {
		known = append(known, fmt.Sprintf("%s:%d has %s", k.Filename, k.Line, describeKey(k.Key)))
	}
	return fmt.Sprintf("%v: %s offers %s but %s: someone may be intercepting the connection, or the host was reinstalled; "+
		"if you know it was, remove the old key with `ssh-keygen -R %s -f %s`", ErrHostKeyChanged, name, offered,
		strings.Join(known, ", "), Quote(name), Quote(e.Known[0].Filename))
}

func describeKey(k ssh.PublicKey) string {
	if c, ok := k.(*ssh.Certificate); ok {
		return fmt.Sprintf("a certificate of %s signed by %s", describeKey(c.Key), describeKey(c.SignatureKey))
	}
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// hostKeys checks host keys against known_hosts files: the keys they record, the
// certificate authorities they trust (@cert-authority) and the keys they revoke (@revoked).
type hostKeys struct {
	check  ssh.HostKeyCallback // nil when no known_hosts file exists
	cas    map[string]bool     // "file:line" of the @cert-authority lines
	file   string              // where new keys go; "" for nowhere
	alias  string              // HostKeyAlias
	accept bool
}

func loadHostKeys(h host) (*hostKeys, error) {
	k := &hostKeys{cas: map[string]bool{}, alias: h.keyAlias, accept: h.acceptNew}
	if len(h.knownHosts) > 0 {
		k.file = h.knownHosts[0]
	}
	var files []string
	for _, f := range append(slices.Clone(h.knownHosts), h.globalKnownHosts...) {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading known hosts: %w", err)
		}
		files = append(files, f)
		for n, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "@cert-authority") {
				k.cas[fmt.Sprintf("%s:%d", f, n+1)] = true
			}
		}
	}
	if len(files) > 0 {
		var err error
		if k.check, err = knownhosts.New(files...); err != nil {
			return nil, fmt.Errorf("reading known hosts: %w", err)
		}
	}
	return k, nil
}

// known returns the keys, and the certificate authorities, that known_hosts records for
// addr.
func (k *hostKeys) known(addr string) (keys, cas []knownhosts.KnownKey) {
	var ke *knownhosts.KeyError
	if k.check == nil || !errors.As(k.check(k.lookup(addr), &net.TCPAddr{}, probeKey{}), &ke) {
		return nil, nil
	}
	for _, w := range ke.Want {
		if k.cas[fmt.Sprintf("%s:%d", w.Filename, w.Line)] {
			cas = append(cas, w)
		} else {
			keys = append(keys, w)
		}
	}
	return keys, cas
}

// algorithms returns the host key algorithms to negotiate with addr: certificates first
// when a @cert-authority line covers it, then the algorithms of the keys known_hosts
// records for it, so that a host with several keys shows one that can be checked
// (golang/go#29286); nil, x/crypto's default, for a host it does not know.
func (k *hostKeys) algorithms(addr string) []string {
	keys, cas := k.known(addr)
	if len(keys) == 0 {
		return nil // x/crypto's default offers certificates first
	}
	known := map[string]bool{}
	for _, w := range keys {
		known[w.Key.Type()] = true
	}
	return slices.DeleteFunc(ssh.SupportedAlgorithms().HostKeys, func(algo string) bool {
		if strings.Contains(algo, "-cert-") {
			return len(cas) == 0
		}
		if algo == ssh.KeyAlgoRSASHA256 || algo == ssh.KeyAlgoRSASHA512 {
			algo = ssh.KeyAlgoRSA
		}
		return !known[algo]
	})
}

// probeKey matches no known key, so checking it lists every key known for a host.
type probeKey struct{}

func (probeKey) Type() string                            { return "ferry-probe" }
func (probeKey) Marshal() []byte                         { return []byte("ferry-probe") }
func (probeKey) Verify(_ []byte, _ *ssh.Signature) error { return errors.New("probe key") }

// callback accepts a host key that known_hosts records for the host, or a host
// certificate valid for it signed by an authority known_hosts trusts for it; with accept,
// it also accepts and records the key of a host known_hosts does not know. Revoked keys
// and authorities are refused. A certificate that no trusted authority signed is checked
// as its plain key, as ssh does.
func (k *hostKeys) callback(addr string, remote net.Addr, key ssh.PublicKey) error {
	name := k.lookup(addr)
	if cert, ok := key.(*ssh.Certificate); ok {
		if err := k.revoked(addr, remote, cert, cert.Key, cert.SignatureKey); err != nil {
			return err
		}
		_, cas := k.known(addr)
		if slices.ContainsFunc(cas, func(ca knownhosts.KnownKey) bool { return keyEqual(ca.Key, cert.SignatureKey) }) {
			if err := k.check(name, remote, cert); err != nil {
				return fmt.Errorf("the host certificate of %s, signed by an authority known_hosts trusts for it, is not valid: %w",
					knownhosts.Normalize(addr), err)
			}
			return nil
		}
		key = cert.Key
	}
	if err := k.revoked(addr, remote, key, key); err != nil {
		return err
	}
	var err error = &knownhosts.KeyError{}
	if k.check != nil {
		err = k.check(name, remote, key)
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return err
	}
	known, _ := k.known(addr)
	if len(known) > 0 || !k.accept || k.file == "" {
		return &HostKeyError{Addr: addr, Alias: k.alias, Key: key, Known: known, File: k.file}
	}
	return addKnownHost(k.file, name, key)
}

// revoked returns a *HostKeyError if known_hosts marks one of keys @revoked: the key
// offered, or for a certificate its key or its authority's.
func (k *hostKeys) revoked(addr string, remote net.Addr, offered ssh.PublicKey, keys ...ssh.PublicKey) error {
	for _, key := range keys {
		var re *knownhosts.RevokedError
		if k.check != nil && errors.As(k.check(k.lookup(addr), remote, key), &re) {
			return &HostKeyError{Addr: addr, Alias: k.alias, Key: offered, Revoked: &re.Revoked}
		}
	}
	return nil
}

func keyEqual(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// lookup is the address known_hosts records addr's key under: HostKeyAlias, as OpenSSH
// uses it (without a port), when set.
func (k *hostKeys) lookup(addr string) string {
	if k.alias != "" {
		return net.JoinHostPort(k.alias, "22")
	}
	return addr
}

var (
	knownHostsMu sync.Mutex
	added        = map[string]bool{} // lines added by this process
)

// addKnownHost appends the line for addr's key to file, once per process.
func addKnownHost(file, addr string, key ssh.PublicKey) error {
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)
	seen := file + "\n" + line
	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if added[seen] {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("adding host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("adding host key: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		return fmt.Errorf("adding host key to %s: %w", file, err)
	}
	added[seen] = true
	return nil
}

// Quote quotes s for a POSIX shell: a path or word in a remote command, never its code.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

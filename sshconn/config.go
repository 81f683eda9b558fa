package sshconn

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"
)

// Config says how Dial reads the ssh config, authenticates and checks host keys. The zero
// Config does what `ssh HOST` does: ~/.ssh/config then /etc/ssh/ssh_config, ssh-agent and
// the identity files the config names (else ~/.ssh/id_ed25519, id_ecdsa, id_rsa), host keys
// from ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts, no new host accepted.
type Config struct {
	// ConfigFile replaces ~/.ssh/config and /etc/ssh/ssh_config (ssh -F); "none" reads none.
	ConfigFile string
	// KnownHosts replaces the user's known_hosts files (the config's UserKnownHostsFile,
	// else ~/.ssh/known_hosts); new host keys are added to it.
	KnownHosts string
	// Identities are private key files offered after the agent's keys and before the
	// config's (ssh -i). They must exist.
	Identities []string
	// AcceptNewHostKey adds the key of a host known_hosts does not know, instead of
	// refusing it. A key that differs from the one known_hosts records is always refused.
	AcceptNewHostKey bool
	// ConnectTimeout bounds connecting and authenticating, per hop; 0 means the config's
	// ConnectTimeout, else DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Passphrase, if set, is asked for the passphrase of an encrypted key file, only once
	// the server has said it would accept that key. Without it such keys fail with an
	// error that says to load them into ssh-agent.
	Passphrase func(keyFile string) ([]byte, error)
}

// DefaultConnectTimeout bounds connecting when neither Config nor the ssh config say.
const DefaultConnectTimeout = 15 * time.Second

// host is what the ssh config makes of one destination.
type host struct {
	name       string // user@host[:port] as the user named the host, for messages
	addr       string // hostname:port, to dial and to look up in known_hosts
	user       string
	identities []identity
	proxyJump  string
	timeout    time.Duration
	agent      string // the ssh-agent socket: IdentityAgent, else $SSH_AUTH_SOCK; "" for none
	// keyAlias is the name known_hosts records the host's key under (HostKeyAlias); ""
	// for addr.
	keyAlias string
	// knownHosts are the user's known_hosts files, the first of which takes new keys, and
	// globalKnownHosts the system's.
	knownHosts, globalKnownHosts []string
}

// An identity is a private key file; explicit ones must exist.
type identity struct {
	path     string
	explicit bool
}

// settings are the parsed ssh config files, the first that says a thing wins.
type settings struct {
	cfg   Config
	home  string
	files []*ssh_config.Config
}

func loadSettings(cfg Config) (*settings, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("finding ~/.ssh: %w", err)
	}
	s := &settings{cfg: cfg, home: home}
	paths := []string{filepath.Join(home, ".ssh", "config"), "/etc/ssh/ssh_config"}
	switch cfg.ConfigFile {
	case "none":
		paths = nil
	case "":
	default:
		paths = []string{cfg.ConfigFile}
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) && cfg.ConfigFile == "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading ssh config: %w", err)
		}
		c, err := ssh_config.Decode(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading ssh config %s: %w", p, err)
		}
		s.files = append(s.files, c)
	}
	return s, nil
}

// get returns the first value the config files give key for alias, "" if none does.
func (s *settings) get(alias, key string) (string, error) {
	for _, c := range s.files {
		if v, err := c.Get(alias, key); err != nil || v != "" {
			return v, err
		}
	}
	return "", nil
}

// getAll returns every value the config files give key for alias.
func (s *settings) getAll(alias, key string) ([]string, error) {
	var all []string
	for _, c := range s.files {
		v, err := c.GetAll(alias, key)
		if err != nil {
			return nil, err
		}
		all = append(all, v...)
	}
	return all, nil
}

// resolve applies the ssh config to d.
func (s *settings) resolve(d Destination) (host, error) {
	alias := d.Host
	var errs []error
	get := func(key string) string {
		v, err := s.get(alias, key)
		errs = append(errs, err)
		return v
	}
	h := host{user: d.User, proxyJump: get("ProxyJump"), timeout: s.cfg.ConnectTimeout}
	hostname := alias
	if v := get("HostName"); v != "" {
		hostname = strings.ReplaceAll(v, "%h", alias)
	}
	port := strconv.Itoa(d.Port)
	if d.Port == 0 {
		if port = get("Port"); port == "" {
			port = "22"
		}
	}
	h.addr = net.JoinHostPort(hostname, port)
	if h.user == "" {
		h.user = get("User")
	}
	if h.user == "" {
		h.user = localUser()
	}
	h.name = Destination{User: h.user, Host: d.Host, Port: d.Port}.String()
	if h.proxyJump == "none" {
		h.proxyJump = ""
	}
	if h.timeout == 0 {
		h.timeout = DefaultConnectTimeout
		if v := get("ConnectTimeout"); v != "" {
			if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
				h.timeout = time.Duration(secs) * time.Second
			}
		}
	}
	for _, p := range s.cfg.Identities {
		h.identities = append(h.identities, identity{path: p, explicit: true})
	}
	files, err := s.getAll(alias, "IdentityFile")
	errs = append(errs, err)
	if len(files) == 0 {
		files = []string{"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"}
	}
	for _, f := range files {
		h.identities = append(h.identities, identity{path: s.expand(f, hostname, h.user)})
	}
	h.agent = os.Getenv("SSH_AUTH_SOCK")
	switch v := get("IdentityAgent"); {
	case v == "none":
		h.agent = ""
	case strings.HasPrefix(v, "$"):
		h.agent = os.Getenv(v[1:])
	case v != "" && v != "SSH_AUTH_SOCK":
		h.agent = s.expand(v, hostname, h.user)
	}
	h.keyAlias = get("HostKeyAlias")
	h.knownHosts = []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"}
	if v := strings.Fields(get("UserKnownHostsFile")); len(v) > 0 {
		h.knownHosts = v
	}
	if s.cfg.KnownHosts != "" {
		h.knownHosts = []string{s.cfg.KnownHosts}
	}
	for i, f := range h.knownHosts {
		h.knownHosts[i] = s.expand(f, hostname, h.user)
	}
	h.globalKnownHosts = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	if v := strings.Fields(get("GlobalKnownHostsFile")); len(v) > 0 {
		h.globalKnownHosts = v
	}
	if err := errors.Join(errs...); err != nil {
		return host{}, fmt.Errorf("reading ssh config for %s: %w", alias, err)
	}
	return h, nil
}

// expand resolves ~ and the tokens %d (home), %u (local user), %h (host), %r (remote
// user) and %% of a file name in the ssh config.
func (s *settings) expand(name, hostname, remoteUser string) string {
	if rest, ok := strings.CutPrefix(name, "~/"); ok {
		name = filepath.Join(s.home, rest)
	}
	return strings.NewReplacer("%%", "%", "%d", s.home, "%u", localUser(), "%h", hostname, "%r", remoteUser).Replace(name)
}

func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

package sshconn

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"
)

// Config says how Dial reads the ssh config, authenticates and checks host keys. The zero
// Config does what `ssh HOST` does: ~/.ssh/config then /etc/ssh/ssh_config, ssh-agent and
// the identity files the config names (else ssh's defaults), host keys from
// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts, no new host accepted.
type Config struct {
	// ConfigFile replaces ~/.ssh/config and /etc/ssh/ssh_config (ssh -F); "none" reads none.
	ConfigFile string
	// Options are ssh's -o Keyword=Value: they win over the config files, for the
	// destination (not for its ProxyJump hosts, as with ssh).
	Options []string
	// KnownHosts replaces the user's known_hosts files (the config's UserKnownHostsFile,
	// else ~/.ssh/known_hosts); new host keys are added to it.
	KnownHosts string
	// Identities are private key files offered after the agent's keys and before the
	// config's (ssh -i). They must exist.
	Identities []string
	// AcceptNewHostKey adds the key of a host known_hosts does not know, instead of
	// refusing it (StrictHostKeyChecking accept-new). A key that differs from the one
	// known_hosts records is always refused.
	AcceptNewHostKey bool
	// ConnectTimeout bounds connecting and authenticating, per hop; 0 means the config's
	// ConnectTimeout, else DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Passphrase, if set, is asked for the passphrase of an encrypted key file, only once
	// the server has said it would accept that key. Without it such keys fail with an
	// error that says to load them into ssh-agent.
	Passphrase func(keyFile string) ([]byte, error)
	// Stderr receives what ProxyCommand and Match exec commands write to their standard
	// error, as ssh shows it; nil discards it.
	Stderr io.Writer
}

// DefaultConnectTimeout bounds connecting when neither Config nor the ssh config say.
const DefaultConnectTimeout = 15 * time.Second

// Keepalives when the ssh config sets no ServerAliveInterval: ferry's connections are
// long and unattended, so a host that stops answering is given up after about a minute.
const defaultAliveInterval = 15 * time.Second

// host is what the ssh config makes of one destination.
type host struct {
	name         string // user@host[:port] as the user named the host, for messages
	addr         string // hostname:port, to dial and to look up in known_hosts
	network      string // tcp, tcp4 or tcp6 (AddressFamily)
	user         string
	identities   []identity
	certificates []string // CertificateFile
	// identitiesOnly offers only the agent's keys that are identity files' or
	// certificates' (IdentitiesOnly).
	identitiesOnly bool
	agent          string // the ssh-agent socket: IdentityAgent, else $SSH_AUTH_SOCK; "" for none
	proxyJump      string
	proxyCommand   string // tokens expanded
	timeout        time.Duration
	aliveInterval  time.Duration
	aliveCountMax  int
	// keyAlias is the name known_hosts records the host's key under (HostKeyAlias); ""
	// for addr.
	keyAlias string
	// knownHosts are the user's known_hosts files, the first of which takes new keys, and
	// globalKnownHosts the system's.
	knownHosts, globalKnownHosts []string
	acceptNew                    bool // StrictHostKeyChecking accept-new or no
}

// An identity is a private key file; explicit ones must exist.
type identity struct {
	path     string
	explicit bool
}

// sshClient is the ssh client whose `ssh -G` resolves a host's settings; "" where none is
// installed, and ferry reads the config files itself.
var sshClient, _ = exec.LookPath("ssh")

// resolve applies the ssh config to d, with options as ssh's -o.
func resolve(ctx context.Context, cfg Config, d Destination, options []string) (host, error) {
	var s settings
	var err error
	if sshClient != "" {
		s, err = askSSH(ctx, cfg, d, options)
	} else {
		s, err = parseConfig(ctx, cfg, d, options)
	}
	if err != nil {
		return host{}, err
	}
	h, err := newHost(s, cfg, d)
	if err != nil {
		return host{}, fmt.Errorf("ssh config for %s: %w", d.Host, err)
	}
	return h, nil
}

// askSSH returns what `ssh -G` prints of d's settings: OpenSSH itself evaluates Host and
// Match blocks (Match exec included), Include, tokens and defaults.
func askSSH(ctx context.Context, cfg Config, d Destination, options []string) (settings, error) {
	args := []string{"-G", "-T"} // -T: no "Pseudo-terminal will not be allocated" from ssh 9.2 when stdin is no terminal
	if cfg.ConfigFile != "" {
		args = append(args, "-F", cfg.ConfigFile)
	}
	for _, o := range options {
		args = append(args, "-o", o)
	}
	if d.User != "" {
		args = append(args, "-l", d.User)
	}
	if d.Port != 0 {
		args = append(args, "-p", strconv.Itoa(d.Port))
	}
	cmd := exec.CommandContext(ctx, sshClient, append(args, "--", d.Host)...)
	stderr := &tailBuffer{max: maxStderr}
	cmd.Stderr = stderr
	if cfg.Stderr != nil {
		cmd.Stderr = io.MultiWriter(cfg.Stderr, stderr)
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reading the ssh config for %s with `%s`: %w: %s", d.Host, strings.Join(cmd.Args, " "),
			err, strings.TrimSpace(stderr.String()))
	}
	s := settings{}
	for line := range strings.Lines(string(out)) {
		if k, v, _ := strings.Cut(strings.TrimSpace(line), " "); k != "" {
			s[k] = append(s[k], v)
		}
	}
	return s, nil
}

// newHost turns resolved settings into a host.
func newHost(s settings, cfg Config, d Destination) (host, error) {
	if err := checkRefused(s, d.Host); err != nil {
		return host{}, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return host{}, fmt.Errorf("finding ~/.ssh: %w", err)
	}
	t := tokens{home: home, orig: d.Host, host: s.get("hostname"), port: s.get("port"), user: s.get("user"),
		alias: s.get("hostkeyalias")}
	h := host{
		name:           Destination{User: t.user, Host: d.Host, Port: d.Port}.String(),
		addr:           net.JoinHostPort(t.host, t.port),
		user:           t.user,
		identitiesOnly: yes(s.get("identitiesonly")),
		keyAlias:       t.alias,
		timeout:        cfg.ConnectTimeout,
		aliveInterval:  defaultAliveInterval,
		aliveCountMax:  3,
	}
	switch af := strings.ToLower(s.get("addressfamily")); af {
	case "", "any":
		h.network = "tcp"
	case "inet":
		h.network = "tcp4"
	case "inet6":
		h.network = "tcp6"
	default:
		return host{}, fmt.Errorf("AddressFamily %q is not any, inet or inet6", af)
	}
	if v := s.get("proxyjump"); v != "none" {
		h.proxyJump = v
	}
	if v := s.get("proxycommand"); v != "" && v != "none" {
		if h.proxyCommand, err = t.expand(v); err != nil {
			return host{}, fmt.Errorf("ProxyCommand: %w", err)
		}
	}
	if h.timeout == 0 {
		h.timeout = DefaultConnectTimeout
		if secs, err := strconv.Atoi(s.get("connecttimeout")); err == nil && secs > 0 {
			h.timeout = time.Duration(secs) * time.Second
		}
	}
	if secs, err := strconv.Atoi(s.get("serveraliveinterval")); err == nil && secs > 0 {
		h.aliveInterval = time.Duration(secs) * time.Second
	}
	if n, err := strconv.Atoi(s.get("serveralivecountmax")); err == nil && n > 0 {
		h.aliveCountMax = n
	}
	for _, p := range cfg.Identities {
		h.identities = append(h.identities, identity{path: p, explicit: true})
	}
	for _, f := range s["identityfile"] {
		p, err := t.expand(f)
		if err != nil {
			return host{}, fmt.Errorf("IdentityFile: %w", err)
		}
		h.identities = append(h.identities, identity{path: p})
	}
	for _, f := range s["certificatefile"] {
		p, err := t.expand(f)
		if err != nil {
			return host{}, fmt.Errorf("CertificateFile: %w", err)
		}
		h.certificates = append(h.certificates, p)
	}
	h.agent = os.Getenv("SSH_AUTH_SOCK")
	switch v := s.get("identityagent"); {
	case v == "none":
		h.agent = ""
	case strings.HasPrefix(v, "$"):
		h.agent = os.Getenv(v[1:])
	case v != "" && v != "SSH_AUTH_SOCK":
		h.agent = v
	}
	if v := s.get("userknownhostsfile"); v != "none" {
		h.knownHosts = strings.Fields(v)
	}
	if cfg.KnownHosts != "" {
		h.knownHosts = []string{cfg.KnownHosts}
	}
	h.globalKnownHosts = strings.Fields(s.get("globalknownhostsfile"))
	switch v := strings.ToLower(s.get("stricthostkeychecking")); v {
	case "", "yes", "true", "ask":
		h.acceptNew = cfg.AcceptNewHostKey
	case "accept-new", "no", "false", "off":
		h.acceptNew = true
	default:
		return host{}, fmt.Errorf("StrictHostKeyChecking %q is not yes, ask, accept-new or no", v)
	}
	return h, nil
}

// yes reports whether an ssh config flag is on.
func yes(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "true":
		return true
	}
	return false
}

func localUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

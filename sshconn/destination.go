package sshconn

import (
	"fmt"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// A Destination names an SSH host: [user@]host[:port], or ssh://[user@]host[:port][/path]
// when a path on the host goes with it.
type Destination struct {
	User string // "" for the ssh config's User, else the local user
	Host string // a host name, an IP address or a Host alias of the ssh config
	Port int    // 0 for the ssh config's Port, else 22
	Path string // an absolute path on the host, "" when none was given
}

var (
	hostName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
)

// ParseDestination parses [user@]host[:port] or ssh://[user@]host[:port][/path]. IPv6
// addresses with a port go in brackets: [::1]:2222. It accepts only names that cannot be
// mistaken for options or shell syntax.
func ParseDestination(s string) (Destination, error) {
	bad := func(why string) (Destination, error) {
		return Destination{}, fmt.Errorf("%w %q: %s", ErrInvalidDestination, s, why)
	}
	rest, isURL := strings.CutPrefix(s, "ssh://")
	if !isURL && strings.Contains(s, "://") {
		return bad("the only URL scheme is ssh://")
	}
	var d Destination
	if isURL {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest, d.Path = rest[:i], rest[i:]
			if d.Path == "/" {
				d.Path = ""
			} else if d.Path != path.Clean(d.Path) || strings.ContainsFunc(d.Path, isControl) {
				return bad("the path must be clean, absolute and printable")
			}
		}
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		d.User, rest = rest[:i], rest[i+1:]
		if !userName.MatchString(d.User) {
			return bad("a user name is letters, digits, '.', '_' and '-', not starting with '-'")
		}
	}
	host, port := rest, ""
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("missing ']'")
		}
		host, port = rest[1:end], rest[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return bad("unexpected text after ']'")
		}
		port = strings.TrimPrefix(port, ":")
		if net.ParseIP(host) == nil {
			return bad("brackets hold an IPv6 address")
		}
	case strings.Count(rest, ":") == 1:
		host, port, _ = strings.Cut(rest, ":")
	case strings.Count(rest, ":") > 1 && net.ParseIP(rest) == nil:
		return bad("an IPv6 address with a port goes in brackets: [::1]:2222")
	}
	if net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return bad("a host is a name (letters, digits, '.', '_' and '-', not starting with '-') or an IP address")
	}
	d.Host = host
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad("the port must be a number from 1 to 65535")
		}
		d.Port = n
	}
	return d, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// String returns the destination as ParseDestination reads it.
func (d Destination) String() string {
	s := d.Host
	if d.Port != 0 {
		s = net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
	}
	if d.User != "" {
		s = d.User + "@" + s
	}
	if d.Path != "" {
		s = "ssh://" + s + d.Path
	}
	return s
}

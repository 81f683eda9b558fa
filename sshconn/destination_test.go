package sshconn

import (
	"errors"
	"testing"
)

func TestParseDestination(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Destination
	}{
		{"web1", Destination{Host: "web1"}},
		{"root@10.0.0.5", Destination{User: "root", Host: "10.0.0.5"}},
		{"deploy@web1.example.com:2222", Destination{User: "deploy", Host: "web1.example.com", Port: 2222}},
		{"[::1]:2222", Destination{Host: "::1", Port: 2222}},
		{"::1", Destination{Host: "::1"}},
		{"ssh://web1", Destination{Host: "web1"}},
		{"ssh://root@web1:22/", Destination{User: "root", Host: "web1", Port: 22}},
		{"ssh://me@web1/run/user/1000/docker.sock", Destination{User: "me", Host: "web1", Path: "/run/user/1000/docker.sock"}},
		{"ssh://[fe80::1]:22/var/run/docker.sock", Destination{Host: "fe80::1", Port: 22, Path: "/var/run/docker.sock"}},
	} {
		got, err := ParseDestination(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseDestination(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if again, err := ParseDestination(got.String()); err != nil || again != got {
			t.Errorf("ParseDestination(%q.String() = %q) = %+v, %v", c.in, got.String(), again, err)
		}
	}
	for _, in := range []string{
		"", "-oProxyCommand=x", "root@-host", "-l@host", "host:0", "host:65536", "host:ssh", "a b", "host;rm",
		"$(id)@host", "user@", "@host", "fe80::1:22x", "[::1", "[web1]:22", "[::1]x", "tcp://host",
		"ssh://host/../etc", "ssh://host/rel/../x", "ssh://host/a\nb", "host/path", "user@host@x:",
	} {
		if d, err := ParseDestination(in); !errors.Is(err, ErrInvalidDestination) {
			t.Errorf("ParseDestination(%q) = %+v, %v; want ErrInvalidDestination", in, d, err)
		}
	}
}

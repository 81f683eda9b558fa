package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnreachable(t *testing.T) {
	host := "unix://" + filepath.Join(t.TempDir(), "no.sock")
	c, err := New(host)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach docker daemon at "+host) {
		t.Fatalf("got %v, want an error naming %s", err, host)
	}
	_, err = c.Images(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is dockerd running?") {
		t.Fatalf("got %v, want a hint to start dockerd", err)
	}
}

func TestParseHost(t *testing.T) {
	for _, tt := range []struct {
		host, network, addr string
		err                 bool
	}{
		{host: "unix:///var/run/docker.sock", network: "unix", addr: "/var/run/docker.sock"},
		{host: "tcp://10.0.0.5:2375", network: "tcp", addr: "10.0.0.5:2375"},
		{host: "tcp://10.0.0.5", network: "tcp", addr: "10.0.0.5:2375"},
		{host: "tcp://[::1]:2376/", network: "tcp", addr: "[::1]:2376"},
		{host: "unix://", err: true},
		{host: "ssh://me@host", err: true},
		{host: "/var/run/docker.sock", err: true},
	} {
		t.Run(tt.host, func(t *testing.T) {
			network, addr, err := parseHost(tt.host)
			if tt.err {
				if err == nil {
					t.Fatalf("got %s %s, want an error", network, addr)
				}
				return
			}
			if err != nil || network != tt.network || addr != tt.addr {
				t.Fatalf("got %s %s %v, want %s %s", network, addr, err, tt.network, tt.addr)
			}
		})
	}
}

// TestNegotiate checks the version choice against fake daemons of other
// versions, and that later requests carry it.
func TestNegotiate(t *testing.T) {
	// info is the version /info is asked in: 1.46 where the daemon serves it (Containerd).
	for _, tt := range []struct {
		server, min, want, info string
	}{
		{server: "1.41", min: "1.12", want: "1.41", info: "1.41"},
		{server: "1.40", min: "1.12", want: "1.40", info: "1.40"},
		{server: "1.47", min: "1.24", want: "1.41", info: "1.46"},
		{server: "1.52", min: "1.44", want: "1.44", info: "1.46"}, // dockerd 29
		{server: "1.60", min: "1.50", want: "1.50", info: "1.50"},
		{server: "", want: "1.24", info: "1.24"},
	} {
		t.Run(tt.server, func(t *testing.T) {
			var infoPath string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.server != "" {
					w.Header().Set("API-Version", tt.server)
				}
				switch {
				case r.URL.Path == "/_ping":
					io.WriteString(w, "OK")
				case r.URL.Path == "/version":
					fmt.Fprintf(w, `{"ApiVersion":%q,"MinAPIVersion":%q}`, tt.server, tt.min)
				case strings.HasSuffix(r.URL.Path, "/info"):
					infoPath = r.URL.Path
					io.WriteString(w, `{"ServerVersion":"29.0.0","Driver":"overlayfs",
						"DriverStatus":[["driver-type","io.containerd.snapshotter.v1"]]}`)
				default:
					http.NotFound(w, r)
				}
			}))
			defer srv.Close()
			c, err := New("tcp://" + srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.Info(context.Background()) // pings first
			if err != nil {
				t.Fatal(err)
			}
			if want := "/v" + tt.info + "/info"; infoPath != want {
				t.Errorf("requested %s, want %s", infoPath, want)
			}
			if c.version != tt.want {
				t.Errorf("negotiated %s, want %s", c.version, tt.want)
			}
			if !info.ContainerdSnapshotter {
				t.Errorf("ContainerdSnapshotter is false for a daemon reporting driver-type io.containerd.snapshotter.v1")
			}
		})
	}
}

package testenv

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDocker(t *testing.T) {
	t.Parallel()
	start := time.Now()
	d := StartDocker(t)
	t.Logf("dockerd ready after %v", time.Since(start))

	base := d.BusyboxImage(t, "ferry-test/base:1", map[string]string{"/etc/hello": "hello base\n"})
	if !strings.HasPrefix(base, "sha256:") {
		t.Fatalf("BusyboxImage returned %q, want sha256:...", base)
	}
	derived := d.DeriveImage(t, "ferry-test/derived:1", "ferry-test/base:1",
		map[string]string{"/data/a/b.txt": "layer two\n"})
	if !strings.HasPrefix(derived, "sha256:") || derived == base {
		t.Fatalf("DeriveImage returned %q (base %q)", derived, base)
	}

	for _, c := range []struct{ ref, path, want string }{
		{"ferry-test/base:1", "/etc/hello", "hello base\n"},
		{"ferry-test/derived:1", "/etc/hello", "hello base\n"},
		{"ferry-test/derived:1", "/data/a/b.txt", "layer two\n"},
	} {
		if got := d.Cat(t, c.ref, c.path); got != c.want {
			t.Errorf("Cat(%s, %s) = %q, want %q", c.ref, c.path, got, c.want)
		}
	}

	if out, err := d.RunErr("image", "inspect", "ferry-test/missing:1"); err == nil {
		t.Errorf("RunErr on missing image succeeded: %s", out)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	r := StartRegistry(t)
	resp, err := http.Get("http://" + r.Addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
}

func TestHelpers(t *testing.T) {
	if p := FreePort(t); p <= 0 || p > 65535 {
		t.Errorf("FreePort = %d", p)
	}
	if p := Require(t, "sh"); !strings.HasSuffix(p, "/sh") {
		t.Errorf("Require(sh) = %q", p)
	}
}

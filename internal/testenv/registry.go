package testenv

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is a throwaway Debian docker-registry (distribution 2.8) on 127.0.0.1.
type Registry struct {
	Addr string // "127.0.0.1:PORT"
}

// StartRegistry starts a docker-registry with filesystem storage in a temp
// dir on a free port, waits until GET /v2/ answers and registers cleanup.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	bin := Require(t, "docker-registry")
	dir := t.TempDir() // removed after the cleanup below has stopped the registry
	r := &Registry{Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t))}
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "storage"), r.Addr)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	p := startProc(t, filepath.Join(dir, "registry.log"), os.Environ(), bin, "serve", configPath)
	t.Cleanup(func() { p.stop(10 * time.Second) })

	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	p.waitReady(t, "docker-registry", 30*time.Second, func() error {
		return httpOK(client, "http://"+r.Addr+"/v2/")
	})
	return r
}

// StartReferrersRegistry starts go-containerregistry's registry in this process on
// 127.0.0.1, in memory, serving the OCI referrers API (docker-registry 2.8 serves none), and
// returns its address, "127.0.0.1:PORT".
func StartReferrersRegistry(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

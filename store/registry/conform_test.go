package registry_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ferrytool/ferry/internal/testenv"
	_ "github.com/ferrytool/ferry/store/all"
	"github.com/ferrytool/ferry/store/storetest"
)

// TestConformance runs the store conformance suite against a registry (distribution 2.8)
// on this machine; skopeo reads the images back.
func TestConformance(t *testing.T) {
	skopeo := testenv.Require(t, "skopeo")
	imgs := storetest.DockerImages(t)
	reg := testenv.StartRegistry(t)
	storetest.Run(t, imgs, storetest.Target{
		Ref:   "registry:" + reg.Addr + "/mirror",
		State: func(t *testing.T) string { return registryState(t, reg.Addr) },
		Check: func(t *testing.T, tag, _ string) {
			storetest.CheckConfig(t, skopeo, "docker://"+reg.Addr+"/mirror/"+tag, imgs.IDs[tag])
			checkGzip(t, tag, pushed(t, reg.Addr+"/mirror/"+tag))
		},
	})
}

// registryState lists the registry's repositories and their tags.
func registryState(t *testing.T, addr string) string {
	t.Helper()
	get := func(path string, v any) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	var catalog struct{ Repositories []string }
	get("/v2/_catalog", &catalog)
	var out []string
	for _, repo := range catalog.Repositories {
		var tags struct{ Tags []string }
		get("/v2/"+repo+"/tags/list", &tags)
		slices.Sort(tags.Tags)
		out = append(out, repo+" "+strings.Join(tags.Tags, ","))
	}
	return strings.Join(out, "\n")
}

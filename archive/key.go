package archive

import (
	"encoding/json"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageKey is a digest of what makes an image the image it is, as every store reports it:
// its platform, creation time, layers (diffIDs) and the run settings of its config. A store
// that rewrites an image's config or manifest when it loads it (docker's containerd image
// store gives an image docker loaded from a legacy archive a manifest of its own) still
// reports these, so the key finds the image where its digests do not.
func ImageKey(cfg *v1.ConfigFile) v1.Hash {
	c := cfg.Config
	key := struct {
		OS, Architecture, Variant string
		Created                   string
		DiffIDs                   []v1.Hash
		Cmd, Entrypoint, Env      []string
		Labels                    map[string]string
		User, WorkingDir          string
		ExposedPorts, Volumes     []string
		StopSignal                string
	}{
		OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant,
		Created: cfg.Created.UTC().Format(time.RFC3339Nano), DiffIDs: cfg.RootFS.DiffIDs,
		Cmd: c.Cmd, Entrypoint: c.Entrypoint, Env: c.Env, Labels: c.Labels, User: c.User, WorkingDir: c.WorkingDir,
		ExposedPorts: keys(c.ExposedPorts), Volumes: keys(c.Volumes), StopSignal: c.StopSignal,
	}
	if len(key.Labels) == 0 {
		key.Labels = nil
	}
	for _, l := range []*[]string{&key.Cmd, &key.Entrypoint, &key.Env} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	data, _ := json.Marshal(key) // plain values: it cannot fail
	return sha256Hash(append([]byte("ferry image key v1\n"), data...))
}

func keys(m map[string]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

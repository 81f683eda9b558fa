package main

import (
	"github.com/spf13/pflag"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/store"
)

// readFlags say what is read of the images named: which platform, every platform, and
// which artifacts that refer to them (save, send).
type readFlags struct {
	platform     string
	allPlatforms bool
	referrers    string
}

func (r *readFlags) register(f *pflag.FlagSet) {
	f.StringVar(&r.platform, "platform", "", "pick `os/arch[/variant]` from multi-platform images (default: the host's)")
	f.BoolVar(&r.allPlatforms, "all-platforms", false, "keep every platform of a multi-platform image and its index digest in the OCI part (OCI layouts, registries and pools keep it; docker takes one platform)")
	f.StringVar(&r.referrers, "referrers", "all", "from a registry, the artifacts that refer to the images to take along: `none`, all, or a list of sig, att, sbom and artifact types (signatures, attestations, SBOMs; by the referrers API and cosign's tag scheme)")
}

// options are the store's read options for these flags.
func (r *readFlags) options() (store.ReadOptions, error) {
	platform, err := parsePlatform(r.platform)
	if err != nil {
		return store.ReadOptions{}, err
	}
	referrers, err := archive.ParseReferrers(r.referrers)
	if err != nil {
		return store.ReadOptions{}, usagef("--referrers: %v", err)
	}
	return store.ReadOptions{Platform: platform, AllPlatforms: r.allPlatforms, Referrers: referrers}, nil
}

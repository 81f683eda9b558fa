package dedupe

import (
	"encoding/json"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// index is index.json as the records say it should be: every image of every bundle, its
// ref name NAME/TAG (NAME/sha256-<hex> when untagged), but those naming layers the pool
// stores as content (Unlisted), which no OCI reader could read.
func (p *Pool) index() (v1.IndexManifest, error) {
	idx := EmptyIndex()
	records, err := p.Records()
	if err != nil {
		return idx, err
	}
	for _, r := range records {
		for _, d := range r.Index {
			if slices.Contains(r.Unlisted, d.Digest.Hex) {
				continue
			}
			ref := archive.RefTag(d.Annotations)
			if ref == "" {
				ref = "sha256-" + d.Digest.Hex
			}
			ann := map[string]string{}
			for k, v := range d.Annotations {
				ann[k] = v
			}
			ann["org.opencontainers.image.ref.name"] = r.Name + "/" + ref
			d.Annotations = ann
			if s, ok := r.Manifests[d.Digest.Hex]; ok {
				d.Digest, d.Size = sha256Hex(s.Digest), s.Size
			}
			idx.Manifests = append(idx.Manifests, d)
		}
	}
	return idx, nil
}

func (p *Pool) writeIndex() error {
	_, err := p.repairIndex()
	return err
}

// repairIndex rewrites index.json from the records when it does not list what they hold
// (a process killed between writing a record and the index), and says whether it did. Call
// it under Lock.
func (p *Pool) repairIndex() (bool, error) {
	want, err := p.index()
	if err != nil {
		return false, err
	}
	if have, err := p.Layout.Index(); err == nil && sameIndex(want, have) && p.has(p.path("index.json")) {
		return false, nil
	}
	return true, p.WriteIndex(want)
}

func sameIndex(a, b v1.IndexManifest) bool {
	ja, _ := json.Marshal(a.Manifests)
	jb, _ := json.Marshal(b.Manifests)
	return string(ja) == string(jb)
}

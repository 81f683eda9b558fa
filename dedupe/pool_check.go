package dedupe

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// A Problem is something Check found wrong.
type Problem struct {
	Blob   string `json:"blob,omitempty"`
	Bundle string `json:"bundle,omitempty"`
	What   string `json:"problem"`
	// Repaired: Check mended it; the pool is sound in this respect now.
	Repaired bool `json:"repaired,omitempty"`
}

func (p Problem) String() string {
	where := p.Bundle
	if p.Blob != "" {
		where = strings.TrimSpace(where + " blob " + p.Blob)
	}
	return where + ": " + p.What
}

// Check checks the pool's structure: records readable, every blob they need present with
// its size, index.json as the records say (rewritten from them when it is not); with
// readData, every blob's content against its digest, that each compressed layer
// decompresses to the layer (diffID) it stands for, and that each layer stored as content
// rebuilds to it.
func (p *Pool) Check(ctx context.Context, readData bool) ([]Problem, error) {
	records, err := p.Records()
	if err != nil {
		return nil, err
	}
	var problems []Problem
	checked := map[string]bool{}
	for _, r := range records {
		for d, s := range r.Layers {
			if readData && !checked[s.Digest] && ctx.Err() == nil {
				checked[s.Digest] = true
				if what := p.checkPacked(d, s); what != "" {
					problems = append(problems, Problem{Bundle: r.Name, Blob: "sha256:" + s.Digest, What: what})
				}
			}
		}
		for d, size := range r.stored() {
			if checked[d] {
				continue
			}
			checked[d] = true
			if what := p.checkBlob(ctx, d, size, readData); what != "" {
				problems = append(problems, Problem{Bundle: r.Name, Blob: "sha256:" + d, What: what})
			}
		}
		for d, c := range r.Content {
			if readData && !checked["content "+d] && ctx.Err() == nil {
				checked["content "+d] = true
				if err := p.checkContent(ctx, d, r.Blobs[d], c); err != nil {
					problems = append(problems, Problem{Bundle: r.Name, Blob: "sha256:" + d, What: err.Error()})
				}
			}
		}
	}
	unlock, err := p.Lock()
	if err != nil {
		return problems, err
	}
	defer unlock()
	if repaired, err := p.repairIndex(); err != nil {
		problems = append(problems, Problem{What: "index.json does not list what the records hold, and rewriting it failed: " + err.Error()})
	} else if repaired {
		problems = append(problems, Problem{What: "index.json did not list what the records hold (an add or rm was killed): rewritten from them", Repaired: true})
	}
	return problems, ctx.Err()
}

func (p *Pool) checkBlob(ctx context.Context, hexDigest string, size int64, readData bool) string {
	path := p.BlobPath(v1.Hash{Algorithm: "sha256", Hex: hexDigest})
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "missing"
	case st.Size() != size:
		return fmt.Sprintf("%d bytes, want %d", st.Size(), size)
	case !readData || ctx.Err() != nil:
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err.Error()
	}
	if got := archive.HashOf(h); got.Hex != hexDigest {
		return "content hashes to " + got.String()
	}
	return ""
}

// checkContent rebuilds a layer stored as content, which fails unless it hashes to its
// digest.
func (p *Pool) checkContent(ctx context.Context, layer string, size int64, c ContentLayer) error {
	rc := p.openContent(ctx, layer, size, c)
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}

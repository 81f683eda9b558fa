package content

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/archive"
)

// Info says what a content delta gives and what it needs from the store it is loaded into.
type Info struct {
	// Bundle is the bundle the delta gives back: the layers it leaves out (the store holds
	// them as they are) stay Missing.
	Bundle  *archive.Bundle
	Summary Summary
	// Needs are the store's layers its recipes copy from, with the images that hold them.
	Needs []Layer
	// Given says how the delta gives each layer it gives: "content" (a recipe) or "whole".
	Given map[v1.Hash]string
}

// Inspect reads a content delta from r whole and checks everything in it that can be
// checked without the store's layers (every recipe, the new content, the blobs it carries
// whole), staging what it reads under tempDir and removing it.
func Inspect(ctx context.Context, r io.Reader, tempDir string) (*Info, error) {
	d, err := readDelta(ctx, r, tempDir)
	if err != nil {
		return nil, err
	}
	defer d.close()
	info := &Info{Summary: d.summary(), Given: map[v1.Hash]string{}}
	for i, l := range d.h.Base {
		if len(d.ranges[i]) > 0 {
			info.Needs = append(info.Needs, l)
		}
	}
	for _, l := range d.h.Layers {
		info.Given[l.Digest] = "content"
		if l.Whole {
			info.Given[l.Digest] = "whole"
		}
	}
	info.Bundle = d.thin.Supply(func(b *archive.Blob) bool { return info.Given[b.Digest] != "" })
	return info, nil
}

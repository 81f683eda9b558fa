package archive

import v1 "github.com/google/go-containerregistry/pkg/v1"

// Thin returns a copy of b that leaves out every layer blob the destination holds: a blob is
// left out (marked Missing in the copy) when has says so for each place an image uses it.
// Manifests and configs always stay, so the images are complete at the destination. b itself
// is unchanged, so one bundle can be thinned differently for many destinations.
func (b *Bundle) Thin(has func(img *Image, layer int) bool) *Bundle {
	needed := map[*Blob]bool{}
	asLayer := map[*Blob]bool{}
	for _, img := range b.Images {
		for i, l := range img.Layers {
			asLayer[l.Blob] = true
			if !has(img, i) {
				needed[l.Blob] = true
			}
		}
	}
	return b.LeaveOut(func(blob *Blob) bool { return asLayer[blob] && !needed[blob] })
}

// LeaveOut returns a copy of b that leaves out every blob leave says to, whatever it is: a
// layer, a config or a manifest. It is how a store that keeps blobs (an OCI layout) is sent
// only what it lacks; a docker daemon needs every config and manifest (use Thin).
func (b *Bundle) LeaveOut(leave func(*Blob) bool) *Bundle {
	return b.copyWith(func(blob *Blob) *Blob {
		if !blob.Present() || !leave(blob) {
			return blob
		}
		left := *blob
		left.Missing, left.Path, left.Data = true, "", nil
		return &left
	})
}

// copyWith returns a copy of b whose blobs are what with makes of b's.
func (b *Bundle) copyWith(with func(*Blob) *Blob) *Bundle {
	out := &Bundle{Index: b.Index, Codec: b.Codec, blobs: make(map[v1.Hash]*Blob, len(b.blobs))}
	for d, blob := range b.blobs {
		out.blobs[d] = with(blob)
	}
	for _, img := range b.Images {
		c := *img
		c.Config = out.blobs[img.Config.Digest]
		if img.Manifest != nil {
			c.Manifest = out.blobs[img.Manifest.Digest]
		}
		c.Layers = make([]*Layer, len(img.Layers))
		for i, l := range img.Layers {
			c.Layers[i] = &Layer{Blob: out.blobs[l.Digest], DiffID: l.DiffID, MediaType: l.MediaType}
		}
		out.Images = append(out.Images, &c)
	}
	for _, a := range b.Artifacts {
		c := *a
		c.Manifest = out.blobs[a.Manifest.Digest]
		c.Blobs = make([]*Blob, len(a.Blobs))
		for i, blob := range a.Blobs {
			c.Blobs[i] = out.blobs[blob.Digest]
		}
		out.addArtifact(&c)
	}
	return out
}

// Supply returns a copy of b in which the blobs supplied says a source now serves are
// present: a thin bundle made whole again (a content delta's layers, rebuilt).
func (b *Bundle) Supply(supplied func(*Blob) bool) *Bundle {
	return b.copyWith(func(blob *Blob) *Blob {
		if blob.Present() || !supplied(blob) {
			return blob
		}
		c := *blob
		c.Missing = false
		return &c
	})
}

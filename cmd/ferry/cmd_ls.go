package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/content"
)

func newLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls BUNDLE",
		Short: "List the images and layers of a bundle",
		Long: `List the images of a bundle with their tags, IDs, platforms and layers: sizes, which
layers several images share, and which a thin bundle leaves out; under each image, the
artifacts that refer to it (signatures, attestations, SBOMs: digest, size, type, tag), and
those that refer to them; artifacts of their own (Helm charts); the platforms of a
multi-platform image kept whole (save --all-platforms) beyond the one docker loads. The bundle
is read whole and verified on the way.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, delta, err := readBundle(cmd, args[0])
			if err != nil {
				return err
			}
			s := b.Summary()
			if asJSON {
				if delta != nil {
					return printJSON(cmd, deltaJSON{s, delta.Summary, delta.Needs}, nil)
				}
				return printJSON(cmd, s, nil)
			}
			printSummary(cmd, s, delta)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// deltaJSON is what ls --json prints of a content delta: the bundle it gives back, what it
// holds, and the layers it needs from the store.
type deltaJSON struct {
	archive.Summary
	Content content.Summary `json:"content"`
	Needs   []content.Layer `json:"needs"`
}

// readBundle reads and verifies a bundle file without loading it anywhere; a content delta
// is checked as far as it can be without the store's layers, and described (delta).
func readBundle(cmd *cobra.Command, path string) (b *archive.Bundle, delta *content.Info, err error) {
	in, _, err := openInput(path)
	if err != nil {
		return nil, nil, err
	}
	defer in.Close()
	br := bufio.NewReaderSize(in, 64<<10)
	if content.IsDelta(br) {
		delta, err = content.Inspect(cmd.Context(), br, "")
		if err != nil {
			return nil, nil, inPart(in, err)
		}
		return delta.Bundle, delta, nil
	}
	if b, err = archive.Read(cmd.Context(), br, archive.Discard, archive.ReadOptions{}); err != nil {
		return nil, nil, inPart(in, err)
	}
	return b, nil, nil
}

func printSummary(cmd *cobra.Command, s archive.Summary, delta *content.Info) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	for _, img := range s.Images {
		tags := strings.Join(img.Tags, ", ")
		if tags == "" {
			tags = "<untagged>"
		}
		fmt.Fprintf(w, "%s\tID %s\t%s\t%s\n", tags, short(img.ID), img.Platform, humanBytes(img.Bytes))
		for _, l := range img.Layers {
			note := ""
			switch given := givenAs(delta, l.Digest); {
			case given != "":
				note = given
			case l.Missing:
				note = "missing: expected at the destination"
			case l.Shared:
				note = "shared"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", short(l.Digest), humanBytes(l.Size), mediaShort(l.MediaType), note)
		}
		printArtifacts(w, img.Referrers, "  ")
	}
	if len(s.Unattached) > 0 {
		fmt.Fprintln(w, "artifacts")
		printArtifacts(w, s.Unattached, "")
	}
	for _, p := range s.Platforms {
		fmt.Fprintf(w, "%s: %s too, in the OCI part (registries, OCI layouts and pools keep them; docker takes one platform)\n", p.Name, strings.Join(p.Platforms, ", "))
	}
	fmt.Fprintf(w, "%s, %s in all, %s stored (%s)", holding(len(s.Images), s.Artifacts), humanBytes(s.Bytes), humanBytes(s.UniqueBytes), s.Compression)
	if s.MissingLayers > 0 {
		fmt.Fprintf(w, ", %d layers left out", s.MissingLayers)
	}
	fmt.Fprintln(w)
	if note := s.UnreferencedNote(); note != "" {
		fmt.Fprintln(w, note)
	}
	if delta != nil {
		fmt.Fprintf(w, "a content delta: %s; ferry load rebuilds them %s\n", deltaSummary(delta.Summary), needs(delta.Needs))
	}
	w.Flush()
}

// printArtifacts lists artifacts, each under what it refers to: its digest, size (manifest
// and blobs), type and tag scheme tags.
func printArtifacts(w io.Writer, as []archive.ArtifactSummary, indent string) {
	for _, a := range as {
		fmt.Fprintf(w, "%s↳ %s\t%s\t%s\t%s\n", indent, short(a.Digest), humanBytes(a.Size), a.Type, strings.Join(slices.Concat(a.RepoTags, a.Tags), ", "))
		printArtifacts(w, a.Referrers, indent+"  ")
	}
}

// givenAs says how a content delta gives the layer digest names: "" when it does not.
func givenAs(delta *content.Info, digest string) string {
	if delta == nil {
		return ""
	}
	switch delta.Given[v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(digest, "sha256:")}] {
	case "content":
		return "rebuilt from content"
	case "whole":
		return "carried whole"
	}
	return ""
}

// needs says which of the store's layers a content delta is rebuilt from.
func needs(layers []content.Layer) string {
	if len(layers) == 0 {
		return "from the delta alone"
	}
	var names []string
	for _, l := range layers {
		names = append(names, short(l.DiffID.String())+" (in "+strings.Join(l.Refs, ", ")+")")
	}
	return "from the store's layers " + strings.Join(names, ", ")
}

func short(digest string) string {
	_, hex, _ := strings.Cut(digest, ":")
	return hex[:min(12, len(hex))]
}

func mediaShort(mt string) string {
	switch {
	case strings.HasSuffix(mt, "gzip"):
		return "tar+gzip"
	case strings.HasSuffix(mt, "zstd"):
		return "tar+zstd"
	}
	return "tar"
}

func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

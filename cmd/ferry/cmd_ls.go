package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/archive"
)

func newLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls BUNDLE",
		Short: "List the images and layers of a bundle",
		Long: `List the images of a bundle with their tags, IDs, platforms and layers: sizes, which
layers several images share, and which a thin bundle leaves out. The bundle is read whole and
verified on the way.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := readBundle(cmd, args[0])
			if err != nil {
				return err
			}
			s := b.Summary()
			if asJSON {
				return printJSON(cmd, s, nil)
			}
			printSummary(cmd, s)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// readBundle reads and verifies a bundle file without loading it anywhere.
func readBundle(cmd *cobra.Command, path string) (*archive.Bundle, error) {
	in, _, err := openInput(path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	b, err := archive.Read(cmd.Context(), in, archive.Discard, archive.ReadOptions{})
	if err != nil {
		return nil, inPart(in, err)
	}
	return b, nil
}

func printSummary(cmd *cobra.Command, s archive.Summary) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	for _, img := range s.Images {
		tags := strings.Join(img.Tags, ", ")
		if tags == "" {
			tags = "<untagged>"
		}
		fmt.Fprintf(w, "%s\tID %s\t%s\t%s\n", tags, short(img.ID), img.Platform, humanBytes(img.Bytes))
		for _, l := range img.Layers {
			note := ""
			switch {
			case l.Missing:
				note = "missing: expected at the destination"
			case l.Shared:
				note = "shared"
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", short(l.Digest), humanBytes(l.Size), mediaShort(l.MediaType), note)
		}
	}
	fmt.Fprintf(w, "%d images, %s in all, %s stored (%s)", len(s.Images), humanBytes(s.Bytes), humanBytes(s.UniqueBytes), s.Compression)
	if s.MissingLayers > 0 {
		fmt.Fprintf(w, ", %d layers left out", s.MissingLayers)
	}
	fmt.Fprintln(w)
	if note := s.UnreferencedNote(); note != "" {
		fmt.Fprintln(w, note)
	}
	w.Flush()
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

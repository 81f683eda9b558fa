package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify BUNDLE",
		Short: "Check every blob, diffID, manifest and config of a bundle",
		Long: `Read a bundle whole and check it: every blob against its digest, every layer against the
diffID in its config, every manifest and config parsed and consistent, every path safe; every
artifact's blobs, and that what it refers to is in the bundle.
Exits 0 only when all is sound, read to its very end; otherwise names the first bad entry
and exits 3. A content delta is checked as far as it can be without the store it is for
(every recipe, its new content, the layers it carries whole), and what it needs from that
store is named. Entries nothing in the bundle refers to are ignored, and named on stderr.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, delta, err := readBundle(cmd, args[0])
			if err != nil {
				return err
			}
			s := b.Summary()
			if delta != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: OK: a content delta of %d images, %s; ferry load rebuilds them %s\n", args[0], len(s.Images), deltaSummary(delta.Summary), needs(delta.Needs))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK: %s, %s verified", args[0], holding(len(s.Images), s.Artifacts), humanBytes(s.UniqueBytes))
			if s.MissingLayers > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), " (thin: %d layers expected at the destination)", s.MissingLayers)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			if note := s.UnreferencedNote(); note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "ferry:", note)
			}
			return nil
		},
	}
}

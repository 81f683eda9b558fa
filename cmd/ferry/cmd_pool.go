package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/dedupe"
)

func newPoolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Keep any number of bundles in a directory that stores each layer once",
		Long: `A pool is a directory that stores blobs by digest, once, and records bundles: nightly
backups of an image set, repeated shipments. It is a valid OCI image layout, so skopeo, crane
and regctl read its images directly as oci:DIR:BUNDLE/TAG. Layers that come in uncompressed
(docker's) are stored gzipped, those that come in compressed (a registry's) as they are; an
exported bundle has the same manifests, digests and image IDs as the one that came in, and
the same bytes.

A layer that came uncompressed and whose content the pool mostly holds already (a rebuild of
an image it holds) is stored as content: the chunks the pool lacks, and how to rebuild the
layer byte for byte from what it holds. Images with such layers are left out of the OCI view
(index.json); ferry pool export and ferry's readers of pool:DIR:BUNDLE rebuild them.`,
	}
	cmd.AddCommand(newPoolInitCmd(), newPoolAddCmd(), newPoolLsCmd(), newPoolExportCmd(), newPoolStatsCmd(),
		newPoolRmCmd(), newPoolGCCmd(), newPoolCheckCmd())
	return cmd
}

func newPoolInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Make DIR a pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := dedupe.InitPool(args[0])
			return err
		},
	}
}

func newPoolLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls DIR",
		Short: "List the bundles of a pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := openPool(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			records, err := p.Records()
			if err != nil || asJSON {
				return printJSON(cmd, records, err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "BUNDLE\tADDED\tSIZE\tIMAGES")
			for _, r := range records {
				var tags []string
				for _, img := range r.Images {
					if len(img.Tags) == 0 {
						tags = append(tags, short(img.ID))
					}
					tags = append(tags, img.Tags...)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Name, r.Added.Format("2006-01-02 15:04:05"), humanBytes(r.Bytes()), strings.Join(tags, ", "))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newPoolStatsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats DIR",
		Short: "Show what the bundles add up to, what the pool stores, and what each bundle alone holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := openPool(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			s, err := p.Stats()
			if err != nil || asJSON {
				return printJSON(cmd, s, err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "BUNDLE\tSIZE\tONLY IN IT")
			for _, b := range s.Bundles {
				fmt.Fprintf(w, "%s\t%s\t%s\n", b.Name, humanBytes(b.Bytes), humanBytes(b.Own))
			}
			fmt.Fprintf(w, "%d bundles, %s in all, %s unique, %s stored: compression %.3f, overall ratio %.2f\n",
				len(s.Bundles), humanBytes(s.Logical), humanBytes(s.Unique), humanBytes(s.Stored), s.Compression(), s.Ratio())
			byContent := "no layer stored as content"
			if s.Content.Layers > 0 {
				byContent = fmt.Sprintf("%s (%d layers, %s, stored in %s instead of %s)", humanBytes(s.ByContent()), s.Content.Layers,
					humanBytes(s.Content.Bytes), humanBytes(s.Content.Stored), humanBytes(s.Content.Whole))
			}
			fmt.Fprintf(w, "saved by layers (each blob stored once): %s; by content: %s\n", humanBytes(s.ByLayers()), byContent)
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newPoolRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm DIR BUNDLE...",
		Short: "Forget bundles (ferry pool gc then frees the blobs no other bundle needs)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := openPool(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			for _, name := range args[1:] {
				if err := p.Remove(name); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func newPoolGCCmd() *cobra.Command {
	var dryRun, recompress bool
	cmd := &cobra.Command{
		Use:   "gc DIR",
		Short: "Remove the blobs no bundle needs, storing as content the layers the rest of the pool mostly holds",
		Long: `Store as content the whole layers whose content the rest of the pool mostly holds (a pool of
an older ferry, or a set added before the set it rebuilds), reading once each layer whose
chunks the pool does not know yet; then remove the blobs no bundle needs. Safe to interrupt:
run it again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := openPool(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if recompress && dryRun {
				return usagef("--recompress and --dry-run: pick one")
			}
			if recompress {
				from, to, err := p.Recompress(cmd.Context())
				fmt.Fprintf(cmd.ErrOrStderr(), "compressed %s of layers to %s\n", humanBytes(from), humanBytes(to))
				if err != nil {
					return err
				}
			}
			if !dryRun {
				n, whole, err := p.StoreContent(cmd.Context())
				if n > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "stored %d layers as content in place of %s of gzip blobs\n", n, humanBytes(whole))
				}
				if err != nil {
					return err
				}
			}
			removed, bytes, err := p.GC(dryRun)
			verb := "removed"
			if dryRun {
				verb = "would remove"
				for _, d := range removed {
					fmt.Fprintln(cmd.OutOrStdout(), d)
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s %d blobs, %s\n", verb, len(removed), humanBytes(bytes))
			return err
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list what would go, remove nothing")
	cmd.Flags().BoolVar(&recompress, "recompress", false, "first store every layer a pool of older ferry holds uncompressed compressed (safe to interrupt: run it again)")
	return cmd
}

func newPoolCheckCmd() *cobra.Command {
	var readData bool
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Check a pool's structure and references; with --read-data every blob's digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := openPool(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			problems, err := p.Check(cmd.Context(), readData)
			if err != nil {
				return err
			}
			damaged := 0
			for _, pr := range problems {
				fmt.Fprintln(cmd.OutOrStdout(), pr)
				if !pr.Repaired {
					damaged++
				}
			}
			if damaged > 0 {
				return fmt.Errorf("%w: %d problems", dedupe.ErrDamaged, damaged)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "read every blob and check it against its digest, and each compressed layer against its diffID")
	return cmd
}

func printJSON(cmd *cobra.Command, v any, err error) error {
	if err != nil {
		return err
	}
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

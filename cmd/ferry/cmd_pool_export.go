package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/store"
)

type poolExportOptions struct {
	output   string
	compress string
	level    int
	split    string
	checksum bool
	progress progressFlags
}

func newPoolExportCmd() *cobra.Command {
	var o poolExportOptions
	cmd := &cobra.Command{
		Use:   "export DIR BUNDLE|IMAGE... -o FILE",
		Short: "Write bundles or images of a pool as one docker-load-compatible bundle",
		Long: `Write the named bundles, or images by tag (from the newest bundle holding each), as one
bundle that docker load takes, with the same manifests, digests and image IDs as when they
were added. Without --compress (or a .gz name), the bundle is compressed as the (first) bundle
file added was: a whole bundle exports as the same bytes as the file ferry save wrote, given
the same --level.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			write, err := writeOptions(o.compress, o.level, o.output)
			if err != nil {
				return err
			}
			p, err := openPool(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			b, src, err := p.Export(args[1:])
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("compress") && write.Codec == compress.None {
				write.Codec = b.Codec
			}
			out, err := openOutput(o.output, o.split, o.checksum)
			if err != nil {
				return err
			}
			bar := o.progress.start(cmd, "exporting")
			im := store.NewImages(b, src, nil).Counted(bar.update)
			if err := out.close(im.Write(cmd.Context(), out, b, write)); err != nil {
				bar.finish(err, "")
				return err
			}
			bar.finish(nil, fmt.Sprintf("exported %s to %s", strings.Join(args[1:], ", "), outputName(o.output)))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "-", "write to `FILE` (atomically) or - for stdout; .gz or .tgz implies --compress gzip")
	f.StringVar(&o.compress, "compress", "", "compress the bundle: none, gzip or zstd (default: as the bundle added)")
	f.IntVar(&o.level, "level", compress.DefaultLevel, "compression `level`: gzip 1 fastest … 9 smallest; zstd 1 fastest … 4 smallest (higher means 4)")
	f.StringVar(&o.split, "split", "", "write `SIZE`d parts FILE.000, FILE.001, …")
	f.BoolVar(&o.checksum, "checksum", false, "write FILE.sha256, a sha256sum-compatible sidecar")
	o.progress.register(f)
	return cmd
}

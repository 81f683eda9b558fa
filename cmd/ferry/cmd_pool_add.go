package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer"
)

type poolAddOptions struct {
	name     string
	from     string
	platform string
	insecure bool
	progress progressFlags
}

func newPoolAddCmd() *cobra.Command {
	var o poolAddOptions
	cmd := &cobra.Command{
		Use:   "add DIR (BUNDLE... | IMAGE...) [--name NAME]",
		Short: "Add bundles, or images from any source, storing only the blobs the pool lacks",
		Long: `Add bundle files — a base and the deltas made against it, in that order — each under its
own name (the file's, without extensions), or images from any source ferry saves from (docker,
--from registry, oci:DIR[:TAG]) as one bundle named by --name. Only the blobs the pool lacks
are stored; a delta is added only when the pool holds the layers it leaves out.`,
		Example: `  ferry pool add /backup/images nightly.tar.gz
  ferry pool add /backup/images app:1 app:2 --name nightly-$(date +%F)`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "the bundle's name in the pool (default: the file's name, or images-TIME)")
	f.StringVar(&o.from, "from", store.DefaultRef(), "the `STORE` IMAGE references are read from: docker, registry or registry:HOST[/PREFIX]")
	f.StringVar(&o.platform, "platform", "", "pick `os/arch[/variant]` from multi-platform images (default: the host's)")
	f.BoolVar(&o.insecure, "insecure", false, "allow plain http to any registry")
	o.progress.register(f)
	return cmd
}

func (o *poolAddOptions) run(cmd *cobra.Command, dir string, args []string) error {
	p, err := openPool(dir, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if isBundleFile(args[0]) {
		if o.name != "" && len(args) > 1 {
			return usagef("--name names one bundle; add several files without it")
		}
		for _, file := range args {
			name := o.name
			if name == "" {
				name = bundleName(file)
			}
			if err := o.addBundle(cmd, p, name, file); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
		return nil
	}
	return o.addImages(cmd, p, args)
}

func (o *poolAddOptions) addBundle(cmd *cobra.Command, p *dedupe.Pool, name, file string) error {
	in, size, err := openInput(file)
	if err != nil {
		return err
	}
	defer in.Close()
	adding, err := p.Add(name)
	if err != nil {
		return err
	}
	bar := o.progress.start(cmd, "adding "+name)
	_, err = archive.Read(cmd.Context(), bar.reader(in, size), adding, archive.ReadOptions{})
	bar.finish(err, "added "+name+" to the pool")
	if err != nil {
		return inPart(in, err)
	}
	o.report(cmd, adding)
	return nil
}

func (o *poolAddOptions) addImages(cmd *cobra.Command, p *dedupe.Pool, images []string) error {
	name := o.name
	if name == "" {
		name = "images-" + time.Now().UTC().Format("20060102T150405Z")
	}
	platform, err := parsePlatform(o.platform)
	if err != nil {
		return err
	}
	adding, err := p.Add(name)
	if err != nil {
		return err
	}
	bar := o.progress.start(cmd, "adding "+name)
	_, err = transfer.Copy(cmd.Context(), images, transfer.SaveOptions{
		Options: transfer.Options{Insecure: o.insecure},
		From:    o.from,
		Read:    store.ReadOptions{Platform: platform, Progress: bar.update},
	}, adding)
	bar.finish(err, "added "+name+" to the pool")
	if err != nil {
		return err
	}
	o.report(cmd, adding)
	return nil
}

func (o *poolAddOptions) report(cmd *cobra.Command, a *dedupe.Adding) {
	fmt.Fprintf(cmd.OutOrStdout(), "added %s: %d images, %s stored, %s already in the pool\n",
		a.Record.Name, len(a.Record.Images), humanBytes(a.Stored), humanBytes(a.Skipped))
}

// isBundleFile says whether an argument names a bundle file (or split parts) rather than an image.
func isBundleFile(arg string) bool {
	if _, err := os.Stat(arg); err == nil {
		return true
	}
	_, err := os.Stat(arg + ".000")
	return err == nil
}

var bundleExt = regexp.MustCompile(`(\.tar)?(\.gz|\.tgz|\.zst)?(\.[0-9]{3})?$`)

// bundleName is a bundle file's name without its extensions.
func bundleName(file string) string {
	return bundleExt.ReplaceAllString(filepath.Base(file), "")
}

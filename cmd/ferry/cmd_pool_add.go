package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/store/pool"
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
	platform, err := parsePlatform(o.platform)
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
			if err := o.addBundle(cmd, p, name, file, platform); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
		return nil
	}
	name := o.name
	if name == "" {
		name = "images-" + time.Now().UTC().Format("20060102T150405Z")
	}
	return o.addImages(cmd, p, name, args, platform)
}

// addBundle loads a bundle file into the pool as ferry load --to pool:DIR:NAME does.
func (o *poolAddOptions) addBundle(cmd *cobra.Command, p *dedupe.Pool, name, file string, platform *v1.Platform) error {
	in, size, err := openInput(file)
	if err != nil {
		return err
	}
	defer in.Close()
	st := pool.New(p, name)
	bar := o.progress.start(cmd, "adding "+name)
	_, err = transfer.Load(cmd.Context(), bar.reader(in, size), transfer.LoadOptions{Store: st, Platform: platform})
	bar.finish(err, "added "+name+" to the pool")
	if err != nil {
		return inPart(in, err)
	}
	o.report(cmd, st.Added())
	return nil
}

// addImages copies images from a store into the pool as one bundle.
func (o *poolAddOptions) addImages(cmd *cobra.Command, p *dedupe.Pool, name string, images []string, platform *v1.Platform) error {
	st := pool.New(p, name)
	rcv, err := st.Receive(cmd.Context())
	if err != nil {
		return err
	}
	bar := o.progress.start(cmd, "adding "+name)
	_, err = transfer.Copy(cmd.Context(), images, transfer.SaveOptions{
		Options: transfer.Options{Insecure: o.insecure},
		From:    o.from,
		Read:    store.ReadOptions{Platform: platform, Progress: bar.update, Note: o.progress.note(cmd.ErrOrStderr())},
	}, rcv)
	bar.finish(err, "added "+name+" to the pool")
	if err != nil {
		return err
	}
	o.report(cmd, st.Added())
	return nil
}

func (o *poolAddOptions) report(cmd *cobra.Command, a *dedupe.Adding) {
	fmt.Fprintf(cmd.OutOrStdout(), "added %s: %d images, %s stored, %s already in the pool",
		a.Record.Name, len(a.Record.Images), humanBytes(a.Stored), humanBytes(a.Skipped))
	if c := a.Record.ContentStats(); c.Layers > 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "; %d layers (%s) stored as content, in %s instead of %s",
			c.Layers, humanBytes(c.Bytes), humanBytes(c.Stored), humanBytes(c.Whole))
	}
	fmt.Fprintln(cmd.OutOrStdout())
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

package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/internal/parts"
	"github.com/ferrytool/ferry/transfer"
)

type loadOptions struct {
	input    string
	to       string
	platform string
	insecure bool
	progress progressFlags
}

func newLoadCmd() *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load [-i FILE|-] [FILE...] [--to STORE]",
		Short: "Load a bundle into a store",
		Long: `Load a bundle into a store. Any bundle dialect is read: docker save (legacy and 25+),
OCI archives, skopeo and podman archives, go-containerregistry tarballs; plain, gzip or zstd.
Every blob is verified against its digest and every layer against its diffID before the store
changes: a damaged bundle loads nothing.

Without --to: the docker daemon when one answers, else the default OCI store
($XDG_DATA_HOME/ferry/oci or ~/.local/share/ferry/oci). To load into a store on another
host, send the bundle: ferry send FILE -H HOST --to STORE.

` + storeHelp(),
		Example: `  ferry load -i apps.tar.gz
  ferry load -i apps.tar --to oci:/srv/images
  ferry load base.tar delta.tar
  ssh host ferry save app:1 | ferry load`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.input, "input", "i", "", "read the bundle from `FILE`, or - for stdin (the default without FILE arguments)")
	f.StringVar(&o.to, "to", "", "the `STORE`: docker, podman, containerd[:NAMESPACE], oci:DIR, registry:HOST[/PREFIX], pool:DIR:NAME (default: docker if it answers, else the default OCI store)")
	f.StringVar(&o.platform, "platform", "", "pick `os/arch[/variant]` from multi-platform OCI archives (default: the host's)")
	f.BoolVar(&o.insecure, "insecure", false, "allow plain http to any registry")
	o.progress.register(f)
	return cmd
}

func (o *loadOptions) run(cmd *cobra.Command, files []string) error {
	platform, err := parsePlatform(o.platform)
	if err != nil {
		return err
	}
	if o.input != "" {
		files = append([]string{o.input}, files...)
	}
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, file := range files {
		if err := o.load(cmd, file, platform); err != nil {
			if len(files) > 1 {
				err = fmt.Errorf("%s: %w", file, err)
			}
			return err
		}
	}
	return nil
}

func (o *loadOptions) load(cmd *cobra.Command, file string, platform *v1.Platform) error {
	in, size, err := openInput(file)
	if err != nil {
		return err
	}
	defer in.Close()
	bar := o.progress.start(cmd, "loading")
	res, err := transfer.Load(cmd.Context(), bar.reader(in, size), transfer.LoadOptions{
		Options: transfer.Options{Insecure: o.insecure, Waiting: o.progress.waiting(cmd.ErrOrStderr()),
			Note: o.progress.note(cmd.ErrOrStderr())},
		To:       o.to,
		Platform: platform,
	})
	if err != nil {
		bar.finish(err, "")
		return inPart(in, err)
	}
	rebuilt := ""
	if res.Rebuilt != nil {
		rebuilt = fmt.Sprintf(", %s rebuilt from a content delta and the layers the store holds", plural(res.Rebuilt.Rebuilt, "layer"))
	}
	bar.finish(nil, fmt.Sprintf("loaded %s into %s%s", plural(len(res.Bundle.Images), "image"), res.Store, rebuilt))
	for _, img := range res.Images {
		fmt.Fprintf(cmd.OutOrStdout(), "Loaded image: %s (%s)\n", img.Ref, img.ID)
	}
	return nil
}

// openInput opens a bundle — a file, the parts of a split one, or stdin for "-" — and says
// its size when known.
func openInput(path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		if isTerminal(os.Stdin) {
			return nil, 0, usagef("no bundle on stdin: use -i FILE or pipe one in")
		}
		return io.NopCloser(os.Stdin), 0, nil
	}
	return parts.Open(path)
}

// inPart says which part of a split bundle was being read when err happened.
func inPart(in io.Reader, err error) error {
	if p, ok := in.(interface{ Part() string }); ok && !errors.Is(err, parts.ErrPart) {
		return fmt.Errorf("%w (reading %s)", err, p.Part())
	}
	return err
}

package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/compress"
	"github.com/ferrytool/ferry/content"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/internal/parts"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer"
)

type saveOptions struct {
	output   string
	from     string
	read     readFlags
	compress string
	level    int
	insecure bool
	ssh      sshFlags
	have     string
	delta    string
	split    string
	checksum bool
	progress progressFlags
}

func newSaveCmd() *cobra.Command {
	var o saveOptions
	cmd := &cobra.Command{
		Use:   "save IMAGE... [-o FILE|-]",
		Short: "Save images to a bundle docker load takes unchanged",
		Long: `Save one or more images to one bundle: the docker 25 layout (manifest.json and an OCI
layout in one tar), each shared layer stored once, the same images always giving the same bytes.

Images come from the docker daemon ($DOCKER_HOST or the default socket), from a registry
(--from registry; credentials from the docker config; plain http for localhost and 127.0.0.1,
or any registry with --insecure), from the docker daemon of another host over SSH (--from
HOST), from an OCI layout directory (oci:DIR[:REF]) or a pool (pool:DIR:NAME), or from
bundle files (a delta with the base it builds on, say). Registry images keep their
compressed blobs and manifests, so their digests stay the same.

` + storeHelp(),
		Example: `  ferry save app:1 app:2 -o apps.tar.gz
  ferry save --from registry 127.0.0.1:5000/app:1 -o app.tar
  ferry save oci:./layout:1.0 | ssh host docker load
  ferry save --from root@old app:1 -o app.tar.gz`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "-", "write to `FILE` (atomically) or - for stdout; .gz or .tgz implies --compress gzip")
	f.StringVar(&o.from, "from", store.DefaultRef(), "the `STORE` IMAGE references are read from (docker, registry, registry:HOST[/PREFIX], containerd[:NAMESPACE]), or a HOST whose docker daemon is read over SSH")
	o.read.register(f)
	f.StringVar(&o.compress, "compress", "", "compress the bundle: none, gzip, or zstd (docker 23 and later load it; 20.10 does not)")
	f.IntVar(&o.level, "level", compress.DefaultLevel, "compression `level`: gzip 1 fastest … 9 smallest; zstd 1 fastest … 4 smallest (higher means 4)")
	f.BoolVar(&o.insecure, "insecure", false, "allow plain http to any registry")
	f.StringVar(&o.have, "have", "", "write a delta: leave out the layers the destination holds, as an inventory `FILE`, a bundle loaded there, or a STORE")
	f.StringVar(&o.delta, "delta", "layers", "with --have, what the delta leaves out: `layers` the destination holds (docker load takes it), or content: every file and piece of a file it holds (ferry load rebuilds the layers)")
	f.StringVar(&o.split, "split", "", "write `SIZE`d parts FILE.000, FILE.001, … (4G fits FAT32; k, M, G, T or Ki, Mi, Gi, Ti)")
	f.BoolVar(&o.checksum, "checksum", false, "write FILE.sha256, a sha256sum-compatible sidecar for the bundle or its parts")
	o.ssh.register(f)
	o.progress.register(f)
	return cmd
}

func (o *saveOptions) run(cmd *cobra.Command, images []string) error {
	write, err := writeOptions(o.compress, o.level, o.output)
	if err != nil {
		return err
	}
	read, err := o.read.options()
	if err != nil {
		return err
	}
	read.Write = write
	read.Note = o.progress.note(cmd.ErrOrStderr())
	byContent, err := o.deltaKind(write)
	if err != nil {
		return err
	}
	opts := o.ssh.options(o.insecure, promptPassphrase)
	opts.Waiting = o.progress.waiting(cmd.ErrOrStderr())
	var have *dedupe.Inventory
	if o.have != "" {
		if have, err = transfer.Have(cmd.Context(), o.have, opts, byContent); err != nil {
			return fmt.Errorf("--have %s: %w", o.have, err)
		}
	}
	var index *content.Index
	if byContent {
		if index = have.Content; index == nil {
			o.progress.note(cmd.ErrOrStderr())(fmt.Sprintf("--have %s holds no content index (ferry inventory --content makes one): writing a layer delta", o.have))
		}
	}
	out, err := openOutput(o.output, o.split, o.checksum)
	if err != nil {
		return err
	}
	bar := o.progress.start(cmd, "saving")
	read.Progress = bar.update
	from, host := parseFrom(o.from)
	var made string
	b, err := transfer.Save(cmd.Context(), out, images, transfer.SaveOptions{
		Options:  opts,
		From:     from,
		FromHost: host,
		Read:     read,
		Have:     have,
		Content:  index,
		Delta:    func(s content.Summary) { made = ": " + deltaSummary(s) },
	})
	if err = out.close(err); err != nil {
		bar.finish(err, "")
		return err
	}
	bar.finish(nil, fmt.Sprintf("saved %s to %s%s", holding(len(b.Images), len(b.Artifacts)), outputName(o.output), made))
	return nil
}

// deltaKind checks --delta: whether the delta leaves out content, not only layers. A content
// delta is compressed inside: it is never compressed as a whole.
func (o *saveOptions) deltaKind(write archive.WriteOptions) (bool, error) {
	switch {
	case o.delta == "layers":
		return false, nil
	case o.delta != "content":
		return false, usagef("--delta %q: use layers or content", o.delta)
	case o.have == "":
		return false, usagef("--delta content needs --have: what the destination holds")
	case write.Codec != compress.None:
		return false, usagef("--delta content: a content delta is compressed inside; drop --compress, and name it .tar")
	}
	return true, nil
}

// deltaSummary says what a content delta holds.
func deltaSummary(s content.Summary) string {
	msg := fmt.Sprintf("%s rebuilt from content the destination holds and %s of new content (%s compressed)",
		plural(s.Rebuilt, "layer"), humanBytes(s.New), humanBytes(s.Pack+s.Recipes))
	if s.Whole > 0 {
		msg += fmt.Sprintf(", %s carried whole (%s)", plural(s.Whole, "compressed layer"), humanBytes(s.Blobs))
	}
	return msg
}

// writeOptions checks --compress and --level. Without --compress, a bundle file named .gz or
// .tgz is gzip-compressed, one named .zst or .tzst zstd-compressed; output "" is no file.
func writeOptions(name string, level int, output string) (archive.WriteOptions, error) {
	codec, err := compress.ParseCodec(name)
	if err != nil {
		return archive.WriteOptions{}, usageError{err}
	}
	switch {
	case name != "":
	case strings.HasSuffix(output, ".gz") || strings.HasSuffix(output, ".tgz"):
		codec = compress.Gzip
	case strings.HasSuffix(output, ".zst") || strings.HasSuffix(output, ".tzst"):
		codec = compress.Zstd
	}
	if level < 1 || level > 9 {
		return archive.WriteOptions{}, usagef("--level %d: use 1 to 9", level)
	}
	return archive.WriteOptions{Encoder: compress.Encoder{Codec: codec, Level: level}}, nil
}

// output is stdout, or a file (or parts) that appears at its path only when complete.
type output struct {
	io.Writer
	commit func() error
	abort  func()
}

func openOutput(path, split string, checksum bool) (*output, error) {
	if path == "-" {
		if split != "" || checksum {
			return nil, usagef("--split and --checksum need -o FILE")
		}
		if isTerminal(os.Stdout) {
			return nil, usagef("refusing to write a bundle to a terminal: use -o FILE or redirect stdout")
		}
		return &output{Writer: os.Stdout, commit: func() error { return nil }, abort: func() {}}, nil
	}
	var partSize int64
	if split != "" {
		var err error
		if partSize, err = parts.ParseSize(split); err != nil {
			return nil, usagef("--split: %v", err)
		}
	}
	w, err := parts.Create(path, partSize, checksum)
	if err != nil {
		return nil, err
	}
	return &output{Writer: w, commit: w.Commit, abort: w.Abort}, nil
}

// outputName names an -o value in messages.
func outputName(path string) string {
	if path == "-" {
		return "stdout"
	}
	return path
}

func (o *output) close(err error) error {
	if err != nil {
		o.abort()
		return err
	}
	return o.commit()
}

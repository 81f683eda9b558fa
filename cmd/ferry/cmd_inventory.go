package main

import (
	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer"
)

func newInventoryCmd() *cobra.Command {
	var from, host, output string
	var insecure, withContent bool
	var ssh sshFlags
	cmd := &cobra.Command{
		Use:   "inventory [--from STORE] [-H HOST] [-o FILE|-]",
		Short: "Write what a store holds, for a delta made on the other side of an air gap",
		Long: `Write a small JSON file naming the blobs, diffIDs and chain IDs a store holds, and whether it
takes complete images only. Carry it to the connected side and pass it to ferry save --have:
the bundle then leaves out what the store already has (nothing, for a store that takes
complete images only). With -H, the store is on that host, reached over SSH.

With --content, it also indexes the content of every layer of the store's tagged images,
file by file (reading each image once: docker and podman save them; what it learns is kept
in ~/.cache/ferry/content, and a store whose every layer is there is not read again):
ferry save --have FILE --delta content then carries only the files, and pieces of files,
the store lacks.

` + storeHelp(),
		Example: `  ferry inventory -o have.json                  # on the far side
  ferry save app:2 --have have.json -o delta.tar  # on the near side
  ferry load delta.tar                            # on the far side again
  ferry inventory --from oci:/srv/images -H node1
  ferry inventory --from containerd:k8s.io -H ssh://root@node1/run/k3s/containerd/containerd.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := ssh.options(insecure, promptPassphrase)
			opts.Waiting = waitNote(cmd.ErrOrStderr(), false)
			opts.Note = opts.Waiting
			inv, err := transfer.Inventory(cmd.Context(), from, host, opts)
			if err != nil {
				return err
			}
			if withContent {
				if inv.Content, err = transfer.ContentIndex(cmd.Context(), from, host, opts); err != nil {
					return err
				}
			}
			if output == "-" {
				return inv.Write(cmd.OutOrStdout())
			}
			out, err := openOutput(output, "", false)
			if err != nil {
				return err
			}
			return out.close(inv.Write(out))
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", store.DefaultRef(), "the `STORE`: docker, podman, containerd[:NAMESPACE], oci:DIR, pool:DIR or registry:HOST[/PREFIX]")
	f.StringVarP(&host, "host", "H", "", "the store is on `HOST`: [user@]host[:port] or ssh://[user@]host[:port]/SOCKET")
	f.StringVarP(&output, "output", "o", "-", "write to `FILE` (atomically) or - for stdout")
	f.BoolVar(&insecure, "insecure", false, "allow plain http to any registry")
	f.BoolVar(&withContent, "content", false, "index the content of the store's layers too, for ferry save --delta content")
	ssh.register(f)
	return cmd
}

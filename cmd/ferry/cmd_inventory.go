package main

import (
	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/transfer"
)

func newInventoryCmd() *cobra.Command {
	var from, output string
	var insecure bool
	cmd := &cobra.Command{
		Use:   "inventory [--from docker|oci:DIR|pool:DIR|registry:HOST/REPO] [-o FILE|-]",
		Short: "Write what a store holds, for a delta made on the other side of an air gap",
		Long: `Write a small JSON file naming the blobs, diffIDs and chain IDs a store holds. Carry it to
the connected side and pass it to ferry save --have: the bundle then leaves out what the store
already has.`,
		Example: `  ferry inventory -o have.json                  # on the far side
  ferry save app:2 --have have.json -o delta.tar  # on the near side
  ferry load delta.tar                            # on the far side again`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			inv, err := transfer.Inventory(cmd.Context(), from, transfer.InventoryOptions{Insecure: insecure})
			if err != nil {
				return err
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
	cmd.Flags().StringVar(&from, "from", "docker", "the store: docker, oci:DIR, pool:DIR or registry:HOST/REPO")
	cmd.Flags().StringVarP(&output, "output", "o", "-", "write to `FILE` (atomically) or - for stdout")
	cmd.Flags().BoolVar(&insecure, "insecure", false, "allow plain http to any registry")
	return cmd
}

package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/transfer"
)

// newHelperCmd is ferry as the helper of a send on a host (--helper): what `ferry send`
// runs there over SSH. It answers one request of the helper protocol on its standard input
// and output, and reads nothing else.
func newHelperCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "helper",
		Short:  "Answer ferry send on this host (run by ferry send over SSH, not by hand)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return transfer.ServeHelper(cmd.Context(), os.Stdin, os.Stdout)
		},
	}
}

package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ferrytool/ferry/sshconn"
	"github.com/ferrytool/ferry/store"
	"github.com/ferrytool/ferry/transfer"
)

// sshFlags are the flags of the commands that reach hosts over SSH.
type sshFlags struct {
	config     string
	knownHosts string
	identities []string
	acceptNew  bool
	timeout    time.Duration
}

func (s *sshFlags) register(f *pflag.FlagSet) {
	f.StringVarP(&s.config, "ssh-config", "F", "", "read this ssh config `FILE` instead of ~/.ssh/config and /etc/ssh/ssh_config (none: no config)")
	f.StringVar(&s.knownHosts, "known-hosts", "", "check host keys against this `FILE` instead of ~/.ssh/known_hosts")
	f.StringArrayVarP(&s.identities, "identity", "i", nil, "offer the private key in `FILE` after ssh-agent's keys (repeatable)")
	f.BoolVar(&s.acceptNew, "accept-new-host-key", false, "add the key of a host known_hosts does not know to it (a changed key is always refused)")
	f.DurationVar(&s.timeout, "connect-timeout", 0, "give up connecting to a host after this long (default: the ssh config's ConnectTimeout, else 15s)")
}

// options are transfer's options for these flags; a passphrase is asked with ask on a
// terminal.
func (s *sshFlags) options(insecure bool, ask func(string) ([]byte, error)) transfer.Options {
	cfg := sshconn.Config{
		ConfigFile:       s.config,
		KnownHosts:       s.knownHosts,
		Identities:       s.identities,
		AcceptNewHostKey: s.acceptNew,
		ConnectTimeout:   s.timeout,
	}
	if isTerminal(os.Stdin) {
		cfg.Passphrase = ask
	}
	return transfer.Options{SSH: cfg, Insecure: insecure}
}

// parseFrom reads a --from value: a store reference, or a host whose docker daemon is read.
func parseFrom(from string) (ref, host string) {
	if store.IsStore(from) {
		return from, ""
	}
	return "docker", from
}

// storeHelp is the reference grammar, as --help prints it: one line per kind of store.
func storeHelp() string {
	var b strings.Builder
	b.WriteString("Stores (--from, --to, --have):\n")
	for _, k := range store.Kinds() {
		fmt.Fprintf(&b, "  %-26s %s\n", k.Syntax, k.Doc)
	}
	b.WriteString("  FILE                       a bundle file, or the first part of a split one (a source)")
	return b.String()
}

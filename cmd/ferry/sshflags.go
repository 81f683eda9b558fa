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
	settings   []string
	acceptNew  bool
	timeout    time.Duration
}

func (s *sshFlags) register(f *pflag.FlagSet) {
	f.StringVarP(&s.config, "ssh-config", "F", "", "read this ssh config `FILE` instead of ~/.ssh/config and /etc/ssh/ssh_config (none: no config)")
	f.StringVar(&s.knownHosts, "known-hosts", "", "check host keys against this `FILE` instead of ~/.ssh/known_hosts")
	f.StringArrayVarP(&s.identities, "identity", "i", nil, "offer the private key in `FILE` after ssh-agent's keys (repeatable)")
	// -o is ssh's, except where a verb's -o names its output.
	short := "o"
	if f.ShorthandLookup("o") != nil {
		short = ""
	}
	f.StringArrayVarP(&s.settings, "ssh-option", short, nil, "an ssh config setting `KEY=VALUE` for the host, over the ssh config's, as ssh -o (repeatable)")
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
		Options:          s.settings,
		AcceptNewHostKey: s.acceptNew,
		ConnectTimeout:   s.timeout,
		Stderr:           os.Stderr, // what ProxyCommand and Match exec say, as ssh shows it
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
	return store.DefaultRef(), from
}

// fileDoc is the grammar's row for bundle files, which are no store kind.
const fileDoc = "a bundle file, or the first part of a split one (NAME.000). A source only: ferry save, load, send and pool add read it; --have takes it as what the far side loaded"

// grammar is the reference grammar: for each kind of store, and for bundle files, its
// syntax, whether -H can put it on a host, and what it means as a source, as a store and
// on a host. --help prints it (storeHelp) and the README holds the same table, which
// TestREADMEGrammar checks.
func grammar() [][3]string {
	var rows [][3]string
	for _, k := range store.Kinds() {
		host := "no"
		if k.Remote {
			host = "yes"
		}
		rows = append(rows, [3]string{k.Syntax, host, k.Doc})
	}
	return append(rows, [3]string{"FILE", "no", fileDoc})
}

// storeHelp is the reference grammar as --help prints it.
func storeHelp() string {
	const wrap = 70
	var b strings.Builder
	b.WriteString("Stores and sources (--from, --to, --have; -H HOST puts a store on a host, over SSH):\n")
	fmt.Fprintf(&b, "  %-25s %-3s %s\n", "REFERENCE", "-H", "AS A SOURCE, AS A STORE, ON A HOST")
	for i, row := range grammar() {
		if i > 0 {
			b.WriteString("\n")
		}
		line := ""
		first := true
		flush := func() {
			if first {
				fmt.Fprintf(&b, "  %-25s %-3s %s\n", row[0], row[1], line)
			} else {
				fmt.Fprintf(&b, "  %-25s %-3s %s\n", "", "", line)
			}
			first, line = false, ""
		}
		for _, word := range strings.Fields(row[2]) {
			if line != "" && len(line)+1+len(word) > wrap {
				flush()
			}
			if line != "" {
				line += " "
			}
			line += word
		}
		flush()
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Command ferry moves container images where registries can't reach: it saves them to
// docker-load-compatible bundles, verifies and lists bundles, loads them into stores, and
// sends images over SSH into the stores of other hosts.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/dedupe"
	"github.com/ferrytool/ferry/internal/parts"
	"github.com/ferrytool/ferry/store"
	_ "github.com/ferrytool/ferry/store/all" // the kinds of store, registered
	"github.com/ferrytool/ferry/transfer"
)

// version is set with -ldflags "-X main.version=…".
var version = "dev"

// Exit codes, documented in `ferry --help`.
const (
	exitError     = 1 // anything else: a store, a daemon, the network
	exitUsage     = 2 // bad flags or arguments
	exitIntegrity = 3 // the bundle is damaged, unsafe or not a bundle
	exitPartial   = 4 // send: some hosts got the images, others did not
)

const exitHelp = `
Exit status:
  0  success
  1  error (a store, a daemon, a registry, the filesystem)
  2  usage error (bad flags, arguments or references)
  3  the bundle (or a part, or the pool) is damaged, unsafe, incomplete or not a
     bundle (a bad digest, a missing blob or layer, a corrupt gzip or tar header,
     data after its end); nothing was loaded
  4  send: some hosts got the images and others did not (the summary says which)
`

// usageError marks errors in what the user typed.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// memoryLimit is the soft limit on the Go heap (GOMEMLIMIT overrides it): ferry streams, so
// its heap stays far below it, but a bundle whose metadata is large (JSON is held until
// verified) would otherwise grow to twice what it holds before the collector runs.
const memoryLimit = 48 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", printable(err.Error()))
	}
	os.Exit(exitCode(err))
}

// printable escapes, in a message that may quote what a host said, every character that
// would act on a terminal but newline and tab, as Go escapes them.
func printable(msg string) string {
	var b strings.Builder
	for _, r := range msg {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func exitCode(err error) int {
	var usage usageError
	var send *transfer.SendError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &send) && len(send.Failed) < send.Hosts:
		return exitPartial
	case errors.As(err, &usage), errors.Is(err, transfer.ErrInvalidReference), errors.Is(err, transfer.ErrImagesOnly):
		return exitUsage
	case errors.Is(err, archive.ErrNotBundle), errors.Is(err, archive.ErrTruncated), errors.Is(err, archive.ErrUnsafeEntry),
		errors.Is(err, archive.ErrTooLarge), errors.Is(err, archive.ErrDigestMismatch), errors.Is(err, archive.ErrDiffIDMismatch),
		errors.Is(err, archive.ErrInvalidMetadata), errors.Is(err, archive.ErrMissingBlob), errors.Is(err, archive.ErrCorrupt),
		errors.Is(err, parts.ErrPart), errors.Is(err, dedupe.ErrDamaged):
		return exitIntegrity
	}
	return exitError
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Move container images where registries can't reach",
		Long:          rootLong(),
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetUsageTemplate(root.UsageTemplate() + exitHelp)
	root.AddCommand(newSaveCmd(), newLoadCmd(), newLsCmd(), newVerifyCmd(), newInventoryCmd(), newPoolCmd(), newSendCmd())
	return root
}

// rootLong is the root command's help: what ferry does, and every kind of store, as the
// kinds registered with package store name themselves.
func rootLong() string {
	var b strings.Builder
	b.WriteString(`ferry saves images to bundles that docker load takes unchanged (and that are also OCI
layouts), lists and verifies bundles, loads them into a store on this machine, and sends
images over SSH into the stores of other hosts, each getting only the layers it lacks.

Stores (ferry save --help says what each one is, as a source and as a store):
`)
	for _, k := range store.Kinds() {
		where := "reached from this machine only"
		if k.Remote {
			where = "here, or on a host over SSH (-H)"
		}
		fmt.Fprintf(&b, "  %-25s %s\n", k.Syntax, where)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// parsePlatform parses a --platform value; "" means the default (nil).
func parsePlatform(s string) (*v1.Platform, error) {
	if s == "" {
		return nil, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return nil, usagef("--platform %q: %v", s, err)
	}
	return p, nil
}

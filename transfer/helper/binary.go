package helper

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
)

// A Binary is the ferry binary a host runs as its helper.
type Binary struct {
	Path   string // on this machine
	Digest string // sha256, hex
	Size   int64
	OS     string // GOOS and GOARCH it was built for
	Arch   string
}

// Self returns this ferry's binary, or why it cannot be a helper on another machine: only a
// static build runs on any host of its OS and architecture (`make build` makes one).
var Self = sync.OnceValues(func() (*Binary, error) {
	info, ok := debug.ReadBuildInfo()
	cgo := ""
	if ok {
		for _, s := range info.Settings {
			if s.Key == "CGO_ENABLED" {
				cgo = s.Value
			}
		}
	}
	if cgo != "0" {
		return nil, fmt.Errorf("%w: this ferry is not a static build (CGO_ENABLED=%s): build it with make build, or CGO_ENABLED=0 go build",
			ErrUnavailable, cmp.Or(cgo, "unknown"))
	}
	path, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("%w: finding this ferry's binary: %w", ErrUnavailable, err)
	}
	return readBinary(path, runtime.GOOS, runtime.GOARCH)
})

// readBinary describes the binary at path, built for goos/goarch.
func readBinary(path, goos, goarch string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: reading this ferry's binary: %w", ErrUnavailable, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("%w: reading this ferry's binary: %w", ErrUnavailable, err)
	}
	return &Binary{Path: path, Digest: hex.EncodeToString(h.Sum(nil)), Size: n, OS: goos, Arch: goarch}, nil
}

// unameOS and unameArch are what `uname -s` and `uname -m` print on a host that runs a
// binary of a GOOS and a GOARCH.
var (
	unameOS   = map[string][]string{"linux": {"Linux"}, "darwin": {"Darwin"}, "freebsd": {"FreeBSD"}, "openbsd": {"OpenBSD"}, "netbsd": {"NetBSD"}}
	unameArch = map[string][]string{
		"amd64": {"x86_64", "amd64"}, "arm64": {"aarch64", "arm64"}, "386": {"i386", "i486", "i586", "i686"},
		"arm": {"armv6l", "armv7l", "armv7", "armv6"}, "ppc64le": {"ppc64le"}, "s390x": {"s390x"},
		"riscv64": {"riscv64"}, "loong64": {"loongarch64"}, "mips64le": {"mips64"},
	}
)

// runsOn checks that the binary runs on a host whose `uname -sm` printed uname.
func (b *Binary) runsOn(uname string) error {
	f := strings.Fields(uname)
	if len(f) != 2 {
		return fmt.Errorf("%w: uname -sm printed %q", ErrUnavailable, strings.TrimSpace(uname))
	}
	if !slices.Contains(unameOS[b.OS], f[0]) || !slices.Contains(unameArch[b.Arch], f[1]) {
		return fmt.Errorf("%w: the host is %s %s, this ferry is %s/%s", ErrUnavailable, f[0], f[1], b.OS, b.Arch)
	}
	return nil
}

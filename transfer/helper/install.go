package helper

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"

	"github.com/ferrytool/ferry/sshconn"
)

// Dir is where a host keeps its helpers, relative to the SSH user's home directory (where
// sshd starts sessions and SFTP): Dir/DIGEST/ferry, the binary of that sha256 digest.
const Dir = ".cache/ferry/helper"

// ErrUnavailable: the helper cannot run on a host; the error says why.
var ErrUnavailable = errors.New("the ferry helper cannot run there")

// tempPrefix names a binary being copied, next to where it goes.
const tempPrefix = ".ferry-tmp-"

// staleTemp is how old a copy's temporary file is before another copy removes it: one a
// killed copy left, not one another send is writing.
const staleTemp = time.Hour

// A Remote is the helper of one host.
type Remote struct {
	c       *sshconn.Client
	bin     *Binary
	path    string // of the binary, relative to the home directory
	present bool   // the host holds the binary whole
	// Copied is the bytes copied to the host: the binary, when it lacked it.
	Copied int64

	mu   sync.Mutex
	idle *session // the helper Probe started, until a Load takes it
}

// Cost is the bytes Install copies: the binary's size, or none where the host holds it.
func (r *Remote) Cost() int64 {
	if r.present {
		return 0
	}
	return r.bin.Size
}

// Probe finds whether the helper can run on the host c is connected to: that the host runs
// bin (`uname -sm`), and whether it holds bin whole already. Where it does, the same command
// runs it, and the helper waits for the first Load: one session, and one check of the
// binary, for both. An error that wraps ErrUnavailable says why the helper cannot run there;
// Close ends the helper if no Load took it.
func Probe(ctx context.Context, c *sshconn.Client, bin *Binary) (*Remote, error) {
	r := &Remote{c: c, bin: bin, path: path.Join(Dir, bin.Digest, "ferry")}
	rs, err := r.run(ctx, "uname -sm && ")
	if err != nil {
		return nil, err
	}
	uname, err := readLine(rs.br, 4<<10)
	if err == nil {
		err = bin.runsOn(string(uname))
	}
	if err != nil {
		if ctx.Err() != nil {
			rs.s.Close()
			return nil, context.Cause(ctx)
		}
		// A host that prints no uname, or whose command fails but for the check of the
		// binary (another system's, which has none), runs no command: a restricted shell.
		var ce *sshconn.CommandError
		if status := rs.exit(); uname == nil || errors.As(status, &ce) && ce.Status != exitMismatch {
			return nil, fmt.Errorf("%w: it runs no command there: %w", ErrUnavailable, cmp.Or(status, err))
		}
		return nil, err
	}
	switch err := rs.hello(ctx); {
	case err == nil:
		r.present, r.idle = true, rs
	case !errors.Is(err, errMismatch): // the binary there cannot run
		return nil, err
	}
	return r, nil
}

// Close ends the helper Probe started, unless a Load took it.
func (r *Remote) Close() {
	if rs := r.takeIdle(); rs != nil {
		rs.s.Close()
	}
}

// takeIdle returns the helper Probe started, once.
func (r *Remote) takeIdle() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.idle
	r.idle = nil
	return rs
}

// Install copies the binary to the host over SFTP unless it holds it whole.
func (r *Remote) Install(ctx context.Context) error {
	if r.present {
		return nil
	}
	if err := r.install(ctx); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return err
	}
	r.present = true
	return nil
}

// check is a shell command that succeeds when the binary on the host is bin, whole.
func (r *Remote) check() string {
	return `test "$(sha256sum 2>/dev/null <` + sshconn.Quote(r.path) + `)" = ` + sshconn.Quote(r.bin.Digest+"  -")
}

// install copies the binary to a temporary file beside its place, checks what it sent
// against the digest, and renames it into place: the place is a regular file, or nothing.
func (r *Remote) install(ctx context.Context) error {
	sc, err := r.c.SFTP()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer sc.Close()
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	defer stop()
	dir := path.Dir(r.path)
	if err := r.ownDirs(sc, dir); err != nil {
		return err
	}
	cleanTemps(sc, dir)
	tmp := path.Join(dir, tempPrefix+randomHex())
	n, err := r.write(sc, tmp)
	if err == nil {
		if err = sc.PosixRename(tmp, r.path); errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
			sc.Remove(r.path)
			err = sc.Rename(tmp, r.path)
		}
	}
	if err != nil {
		sc.Remove(tmp)
		return fmt.Errorf("%w: copying the helper to ~/%s: %w", ErrUnavailable, r.path, err)
	}
	r.Copied = n
	return nil
}

// ownDirs makes the helper's directories, and checks that they are directories, not links
// to elsewhere, and that nothing but a regular file is where the binary goes.
func (r *Remote) ownDirs(sc *sftp.Client, dir string) error {
	if err := sc.MkdirAll(dir); err != nil {
		return fmt.Errorf("%w: no cache to write: ~/%s: %w", ErrUnavailable, dir, err)
	}
	for _, d := range []string{Dir, dir} {
		if fi, err := sc.Lstat(d); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: ~/%s is not a directory ferry made (a link?): remove it", ErrUnavailable, d)
		}
	}
	if fi, err := sc.Lstat(r.path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: ~/%s is not a file ferry wrote: remove it", ErrUnavailable, r.path)
	}
	return nil
}

// write writes the binary to a new file, name, hashing what it sends: the binary must not
// have changed since it was described.
func (r *Remote) write(sc *sftp.Client, name string) (int64, error) {
	src, err := os.Open(r.bin.Path)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	f, err := sc.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return 0, err
	}
	h := sha256.New()
	n, err := io.Copy(f, io.TeeReader(src, h))
	switch {
	case err != nil:
	case hex.EncodeToString(h.Sum(nil)) != r.bin.Digest:
		err = fmt.Errorf("%s changed while this ferry ran", r.bin.Path)
	default:
		err = f.Chmod(0o755)
	}
	if err == nil {
		if err = f.Sync(); errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
			err = nil
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// cleanTemps removes the temporary files killed copies left in dir.
func cleanTemps(sc *sftp.Client, dir string) {
	entries, _ := sc.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) && time.Since(e.ModTime()) > staleTemp {
			sc.Remove(path.Join(dir, e.Name()))
		}
	}
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

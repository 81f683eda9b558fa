package store

import (
	"context"
	"errors"
	"io"

	"github.com/ferrytool/ferry/archive"
)

// StreamReceiver is the Receiver of a store that loads docker archives (docker load, podman
// load): the bundle is forwarded into one load as it is read (archive.Forwarder), plain,
// and check runs on the verified bundle before manifest.json goes, so a bundle check
// refuses loads nothing.
func StreamReceiver(ctx context.Context, load func(context.Context, io.Reader) ([]string, error),
	check func(context.Context, *archive.Bundle) error) Receiver {
	pr, pw := io.Pipe()
	r := &streamReceiver{pw: pw, fw: archive.NewForwarder(pw), check: check, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_, r.err = load(ctx, pr)
		pr.CloseWithError(errors.Join(r.err, errors.New("the store stopped reading the load stream")))
	}()
	return r
}

type streamReceiver struct {
	pw     *io.PipeWriter
	fw     *archive.Forwarder
	check  func(context.Context, *archive.Bundle) error
	done   chan struct{}
	err    error // from the store, once done is closed
	loaded []Loaded
}

func (r *streamReceiver) Entry(_ context.Context, e archive.Entry, rd io.Reader) error {
	return r.storeErr(r.fw.Entry(e, rd))
}

func (r *streamReceiver) Commit(ctx context.Context, b *archive.Bundle) error {
	if r.check != nil {
		if err := r.check(ctx, b); err != nil {
			return err
		}
	}
	if err := r.fw.Finish(b); err != nil {
		return r.storeErr(err)
	}
	r.pw.Close()
	<-r.done
	if r.err != nil {
		return r.err
	}
	r.loaded = LoadedImages(b)
	return nil
}

func (r *streamReceiver) Abort(err error) {
	r.fw.Close()
	r.pw.CloseWithError(err)
	<-r.done
}

func (r *streamReceiver) Loaded() []Loaded { return r.loaded }

// storeErr prefers the store's own error to the broken pipe it caused.
func (r *streamReceiver) storeErr(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-r.done:
		if r.err != nil {
			return r.err
		}
	default:
	}
	return err
}

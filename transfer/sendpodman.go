package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/sshconn"
)

// podmanLoad is the one command ferry runs for a podman host. It is a constant: nothing the
// user typed goes into it.
const podmanLoad = "podman load"

// sendPodman streams im, whole and uncompressed, into `podman load` on the host: podman 4
// loads neither thin bundles nor gzip-compressed docker archives, and keeps no inventory
// ferry could ask over SSH without running more commands. podman load stores nothing from
// a stream cut short.
func sendPodman(ctx context.Context, res *HostResult, c *sshconn.Client, src *pending, progress func(sent, total int64)) error {
	im, err := src.wait(ctx)
	if err != nil {
		return err
	}
	b := im.Bundle
	opts := archive.WriteOptions{Codec: archive.None}
	res.Layers, _ = countLayers(b)
	res.Complete = true
	res.Full = im.wireSize(b, opts)
	progress(0, res.Full)

	pr, pw := io.Pipe()
	w := &countingWriter{w: pw, report: func(n int64) { progress(n, max(n, res.Full)) }}
	go func() { pw.CloseWithError(im.Write(ctx, w, b, opts)) }()
	out, err := c.Run(ctx, podmanLoad, pr)
	pr.CloseWithError(errors.New("podman load returned")) // stops the writer if podman gave up early
	res.Sent = w.n.Load()
	var ce *sshconn.CommandError
	switch {
	case errors.As(err, &ce) && ce.Status == 127:
		return fmt.Errorf("%w: is podman installed there, and on the PATH of a non-interactive shell?", err)
	case err != nil:
		return fmt.Errorf("%w; the stream stopped after %d bytes, and podman loads nothing from an incomplete stream: the host is as it was", err, res.Sent)
	}
	res.Loaded = podmanLoaded(out)
	return nil
}

// podmanLoaded reads the references podman load says it loaded: "Loaded image: REF" or
// "Loaded image(s): REF,REF" lines.
func podmanLoaded(out string) []string {
	var refs []string
	for _, line := range strings.Split(out, "\n") {
		_, rest, ok := strings.Cut(line, "Loaded image")
		if !ok {
			continue
		}
		_, list, ok := strings.Cut(rest, ": ")
		if !ok {
			continue
		}
		for _, ref := range strings.Split(list, ",") {
			if ref = strings.TrimSpace(ref); ref != "" {
				refs = append(refs, ref)
			}
		}
	}
	return refs
}

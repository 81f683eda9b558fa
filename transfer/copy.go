package transfer

import (
	"context"
	"fmt"

	"github.com/ferrytool/ferry/archive"
)

// Copy reads images from their source straight into sink: docker images as one streamed
// `docker save`, others blob by blob. Nothing is staged on the way.
func Copy(ctx context.Context, images []string, opts SaveOptions, sink archive.Sink) (*archive.Bundle, error) {
	refs, fromDocker, err := classify(images, opts)
	if err != nil {
		return nil, err
	}
	if fromDocker {
		client, err := dockerClient(opts.Docker)
		if err != nil {
			return nil, err
		}
		stream, p, err := saveStream(ctx, client, refs, opts)
		if err != nil {
			return nil, err
		}
		defer stream.Close()
		b, err := archive.Read(ctx, p.reader(stream), sink, archive.ReadOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading docker save stream: %w", err)
		}
		return b, nil
	}
	im, err := Open(ctx, images, opts)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	return im.Bundle, archive.Feed(ctx, im.Bundle, im.src, sink)
}

package transfer

import (
	"context"

	"github.com/ferrytool/ferry/archive"
)

// Copy reads images from their source straight into sink: docker images as one streamed
// `docker save`, others blob by blob. Nothing is staged on the way.
func Copy(ctx context.Context, images []string, opts SaveOptions, sink archive.Sink) (*archive.Bundle, error) {
	refs, fromDocker, err := classify(images, opts)
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	if fromDocker {
		return readDocker(ctx, refs, opts, sink)
	}
	im, err := Open(ctx, images, opts)
	if err != nil {
		sink.Abort(err)
		return nil, err
	}
	defer im.Close()
	return im.Bundle, archive.Feed(ctx, im.Bundle, im.src, sink)
}

package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// tampered serves a bundle's layers with their last byte changed. One that says it checks
// its blobs fails each at its end, as a content rebuild does.
type tampered struct {
	V1Source
	checked bool
}

func (s tampered) Checked() bool { return s.checked }

func (s tampered) Open(ctx context.Context, b *Blob) (io.ReadCloser, error) {
	rc, err := s.V1Source.Open(ctx, b)
	if err != nil || b.Data != nil {
		return rc, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	data[len(data)-1] ^= 1
	var end io.Reader = bytes.NewReader(nil)
	if s.checked {
		end = iotest.ErrReader(ErrDiffIDMismatch)
	}
	return io.NopCloser(io.MultiReader(bytes.NewReader(data), end)), nil
}

// TestFeedChecked: Feed fails a blob that is not what its digest says before Commit, by
// hashing it, or, from a source that checks its blobs itself (a content rebuild), by reading
// it to its end, where the source fails it.
func TestFeedChecked(t *testing.T) {
	img, _ := testImages(t)
	b, src := &Bundle{}, V1Source{}
	if _, err := b.AddImage(img, []string{"app:1"}, src); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		checked bool
		want    error
	}{{false, ErrDigestMismatch}, {true, ErrDiffIDMismatch}} {
		sink := &recorder{}
		err := Feed(context.Background(), b, tampered{V1Source: src, checked: tc.checked}, sink)
		if !errors.Is(err, tc.want) || sink.commits != 0 || sink.aborts != 1 {
			t.Errorf("Feed of a tampered layer, checked %v: %v, %d commits, %d aborts; want %v, aborted", tc.checked, err, sink.commits, sink.aborts, tc.want)
		}
	}
	sink := &recorder{}
	if err := Feed(context.Background(), b, src, sink); err != nil || sink.commits != 1 {
		t.Fatalf("Feed: %v, %d commits", err, sink.commits)
	}
}

package content

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ferrytool/ferry/internal/testenv"
)

// BenchmarkDelta measures a content delta of the rebuilt set (testenv.RebuiltSet) against
// the old one, beside the file-level floor F: the gzip size of the files whose content the
// old set lacks. It reports the delta's bytes, F, their ratio (target ≤ 0.4 × F + 1 MiB),
// and the rebuild's speed as a ratio of reading the rebuilt layers whole.
func BenchmarkDelta(b *testing.B) {
	old, rebuilt := testenv.RebuiltSet(b, 2)
	x := indexOf(b, old...)
	bundle, src := bundleOf(b, rebuilt...)
	floor := newContentGzip(b, old, rebuilt)
	var delta bytes.Buffer
	if _, err := Make(b.Context(), &delta, bundle, src, x, b.TempDir()); err != nil {
		b.Fatal(err)
	}
	base := layersOf(b, old...)
	var full int64
	for _, l := range bundle.LayerOrder() {
		full += l.Size
	}
	b.SetBytes(full)
	b.ResetTimer()
	for b.Loop() {
		rb, err := Rebuild(b.Context(), bytes.NewReader(delta.Bytes()), base, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		rb.Close()
	}
	b.ReportMetric(float64(delta.Len()), "delta-bytes")
	b.ReportMetric(float64(floor), "F-bytes")
	b.ReportMetric(float64(delta.Len())/float64(floor), "delta/F")
	b.ReportMetric(float64(delta.Len())/(0.4*float64(floor)+1<<20), "delta/target")
}

// newContentGzip is F: the gzip size of the rebuilt set's files whose content no file of
// the old set has.
func newContentGzip(b *testing.B, old, rebuilt []v1.Image) int64 {
	seen := map[[32]byte]bool{}
	files(b, old, func(data []byte) { seen[sha256.Sum256(data)] = true })
	var n countWriter
	zw, _ := gzip.NewWriterLevel(&n, gzip.DefaultCompression)
	files(b, rebuilt, func(data []byte) {
		if sum := sha256.Sum256(data); !seen[sum] {
			seen[sum] = true
			zw.Write(data)
		}
	})
	zw.Close()
	return int64(n)
}

func files(b *testing.B, imgs []v1.Image, each func([]byte)) {
	for _, l := range layersOf(b, imgs...) {
		rc, _ := l.Uncompressed()
		tr := tar.NewReader(rc)
		for {
			hdr, err := tr.Next()
			if err != nil {
				break
			}
			if hdr.Typeflag == tar.TypeReg {
				data, _ := io.ReadAll(tr)
				each(data)
			}
		}
		rc.Close()
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

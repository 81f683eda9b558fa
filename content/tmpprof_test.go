package content

import (
	"bytes"
	"io"
	"os"
	"testing"
)

func BenchmarkTmpSegment(b *testing.B) {
	data, err := os.ReadFile("/var/tmp/ferry-pool-bench/layers/blobs/sha256/f63912cd9187782154ac38ffd7eaf2f91c21e2d6b0241afc61defa6efe95902d")
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		x := NewIndex()
		x.Add(b.Context(), bytes.NewReader(data))
	}
}

func BenchmarkTmpEncodeEmpty(b *testing.B) {
	data, err := os.ReadFile("/var/tmp/ferry-pool-bench/layers/blobs/sha256/f63912cd9187782154ac38ffd7eaf2f91c21e2d6b0241afc61defa6efe95902d")
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		x := NewIndex()
		x.Encode(b.Context(), bytes.NewReader(data), io.Discard, io.Discard)
	}
}

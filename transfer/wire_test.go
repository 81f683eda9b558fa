package transfer

import (
	"testing"

	"github.com/ferrytool/ferry/archive"
)

// TestWire: how the stream to a docker host is compressed, from --compress, --level and
// whether the host takes zstd.
func TestWire(t *testing.T) {
	gz, zst := archive.Gzip, archive.Zstd
	for _, c := range []struct {
		name   string
		write  archive.WriteOptions
		adapt  bool
		zstdOK bool
		codec  archive.Codec
		level  int
		adapts bool
	}{
		{"auto to docker 23+: zstd, adapting", archive.WriteOptions{Codec: gz}, true, true, zst, 0, true},
		{"auto --level 6 to docker 23+: a gzip level says nothing of zstd's", archive.WriteOptions{Codec: gz, Level: 6}, true, true, zst, 0, true},
		{"auto to docker 20.10: gzip, adapting", archive.WriteOptions{Codec: gz}, true, false, gz, 0, true},
		{"auto --level 6 to docker 20.10: level 6, or stored", archive.WriteOptions{Codec: gz, Level: 6}, true, false, gz, 6, true},
		{"gzip --level 6: level 6 always", archive.WriteOptions{Codec: gz, Level: 6}, false, true, gz, 6, false},
		{"gzip: adapting", archive.WriteOptions{Codec: gz}, false, true, gz, 0, true},
		{"zstd --level 2: level 2 always", archive.WriteOptions{Codec: zst, Level: 2}, false, true, zst, 2, false},
		{"none", archive.WriteOptions{}, true, true, archive.None, 0, false},
	} {
		got := wire(c.write, c.adapt, c.zstdOK)
		if got.Codec != c.codec || got.Level != c.level || (got.Adapt != nil) != c.adapts {
			t.Errorf("%s: %s level %d adapting %v, want %s level %d adapting %v", c.name, got.Codec, got.Level, got.Adapt != nil, c.codec, c.level, c.adapts)
		}
		if got.Adapt != nil && got.Adapt.Codec() != got.Codec {
			t.Errorf("%s: writing %s, adapting %s", c.name, got.Codec, got.Adapt.Codec())
		}
	}
	w := archive.WriteOptions{Codec: gz}
	if wire(w, true, false).Adapt == wire(w, true, false).Adapt {
		t.Error("two streams share an Adaptive: each link learns its own")
	}
}

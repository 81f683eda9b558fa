package compress

import "testing"

// TestCompressionEncoder: how a stream to a destination is compressed, from --compress,
// --level and whether the destination takes zstd.
func TestCompressionEncoder(t *testing.T) {
	for _, c := range []struct {
		name   string
		c      Compression
		zstdOK bool
		codec  Codec
		level  int
		adapts bool
	}{
		{"auto to docker 23+: zstd, adapting", Compression{Gzip, 0, Auto}, true, Zstd, 0, true},
		{"auto --level 6 to docker 23+: a gzip level says nothing of zstd's", Compression{Gzip, 6, Auto}, true, Zstd, 0, true},
		{"auto to docker 20.10: gzip, adapting", Compression{Gzip, 0, Auto}, false, Gzip, 0, true},
		{"auto --level 6 to docker 20.10: level 6, or stored", Compression{Gzip, 6, Auto}, false, Gzip, 6, true},
		{"gzip --level 6: level 6 always", Compression{Gzip, 6, Fixed}, true, Gzip, 6, false},
		{"gzip: adapting", Compression{Gzip, 0, Follow}, true, Gzip, 0, true},
		{"zstd --level 2: level 2 always", Compression{Zstd, 2, Fixed}, true, Zstd, 2, false},
		{"none", Compression{None, 0, Auto}, true, None, 0, false},
	} {
		got := c.c.Encoder(c.zstdOK)
		if got.Codec != c.codec || got.Level != c.level || (got.Adapt != nil) != c.adapts {
			t.Errorf("%s: %s level %d adapting %v, want %s level %d adapting %v", c.name, got.Codec, got.Level, got.Adapt != nil, c.codec, c.level, c.adapts)
		}
		if got.Adapt != nil && got.Adapt.Codec() != got.Codec {
			t.Errorf("%s: writing %s, adapting %s", c.name, got.Codec, got.Adapt.Codec())
		}
	}
	c := Compression{Gzip, 0, Auto}
	if one, other := c.Encoder(false), c.Encoder(false); one.Adapt == other.Adapt {
		t.Error("two streams share an Adaptive: each link learns its own")
	}
}

package compress

// A Compression is how a stream is compressed, as the user chose it: a codec, a level, and
// how the level (and, with Auto, the codec) is chosen for each destination.
type Compression struct {
	Codec Codec
	// Level is the codec's level (see NewMemberWriter); 0 means DefaultLevel when fixed, and
	// each of AdaptiveLevels(Codec) when the level follows the link.
	Level int
	Mode  Mode
}

// A Mode says how a Compression's level is chosen.
type Mode int

const (
	// Fixed compresses at Level throughout.
	Fixed Mode = iota
	// Follow lets the level follow the link (an Adaptive): Level alone when set, else the
	// codec's AdaptiveLevels.
	Follow
	// Auto follows the link, sends zstd where the destination takes it (a gzip Level then
	// says nothing of zstd's), and stores gzip parts while that moves more than compressing.
	Auto
)

// Encoder returns how one stream to a destination is compressed, the destination taking zstd
// (zstdOK) or not. Each call gets an Adaptive of its own: each link learns its own level.
func (c Compression) Encoder(zstdOK bool) Encoder {
	if c.Mode == Auto && zstdOK && c.Codec == Gzip {
		c.Codec, c.Level = Zstd, 0
	}
	e := Encoder{Codec: c.Codec, Level: c.Level}
	if c.Codec == None || c.Mode == Fixed {
		return e
	}
	levels := AdaptiveLevels(c.Codec)
	if c.Level != 0 {
		levels = []int{c.Level}
	}
	e.Adapt = NewAdaptive(c.Codec, levels, c.Mode == Auto)
	return e
}

package archive

import (
	"strconv"
	"unicode/utf8"
)

// quoteMax is how many bytes of a name Quote keeps.
const quoteMax = 128

// Quote returns s, a name, tag or path that came from a bundle, fit for a message: quoted
// with Go's escapes (ESC, BEL, NUL and other controls never reach a terminal raw) and
// shortened to its first and last bytes when long.
func Quote(s string) string {
	if len(s) > quoteMax {
		head, tail := s[:quoteMax*3/4], s[len(s)-quoteMax/4:]
		for !utf8.ValidString(head) && len(head) > 0 {
			head = head[:len(head)-1]
		}
		for !utf8.ValidString(tail) && len(tail) > 0 {
			tail = tail[1:]
		}
		return strconv.Quote(head) + "…" + strconv.Quote(tail) + " (" + strconv.Itoa(len(s)) + " bytes)"
	}
	return strconv.Quote(s)
}

package stanza

import (
	"math"
	"strconv"
	"strings"
)

// ParseH parses the value of an XEP-0198 h attribute, an xs:unsignedInt,
// in any form of that type's lexical space: ASCII digits (leading zeros
// included), optionally after a '+' sign (or a '-' sign when the value is
// 0), with leading and trailing XML white space (space, tab, CR, LF)
// ignored, as the type's whiteSpace facet (collapse) ignores it. So
// "+42", " 42 " and "0042" are 42, and "-0" is 0. An empty value, a sign
// alone or twice, white space inside, any other character (non-ASCII
// digits and spaces included), a negative value, or a value above
// 4294967295 yields a *FieldError with Attr "h" wrapping ErrInvalidH. The
// element decoders of this package fill in FieldError.Element.
func ParseH(s string) (uint32, error) {
	n, ok := parseH(s)
	if !ok {
		return 0, fieldErr("", "h", ErrInvalidH)
	}
	return n, nil
}

// parseH is ParseH without the error value.
func parseH(s string) (uint32, bool) {
	s = strings.Trim(s, " \t\r\n")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n, ok := parseUint32(s)
	if !ok || neg && n != 0 {
		return 0, false
	}
	return n, true
}

// parseUint32 accepts 1 or more ASCII digits with a value that fits 32
// bits, and nothing else (the max attribute; h goes through parseH).
func parseUint32(s string) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > math.MaxUint32 {
			return 0, false
		}
	}
	return uint32(n), true
}

func formatUint32(n uint32) string {
	return strconv.FormatUint(uint64(n), 10)
}

// parseBool accepts the xs:boolean lexical forms used by XEP-0198.
func parseBool(s string) (v, ok bool) {
	switch s {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

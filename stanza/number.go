package stanza

import (
	"math"
	"strconv"
)

// ParseH parses the value of an XEP-0198 h attribute, an xs:unsignedInt.
// Only ASCII digits are accepted (leading zeros included); an empty string, a
// sign (even "+"), white space, any other character, or a value above
// 4294967295 yields a *FieldError with Attr "h" wrapping ErrInvalidH.
// The element decoders of this package fill in FieldError.Element.
func ParseH(s string) (uint32, error) {
	n, ok := parseUint32(s)
	if !ok {
		return 0, fieldErr("", "h", ErrInvalidH)
	}
	return n, nil
}

// parseUint32 accepts 1 or more ASCII digits with a value that fits 32 bits.
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

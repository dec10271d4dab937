// Package xmltext holds the one rule for text that goes into XML: the
// client's Send and the stores refuse the same ids and threads by it.
//
// XML 1.0 (§2.2) allows tab, line feed, carriage return and the characters
// from U+0020 on, except the surrogates and U+FFFE and U+FFFF. Text with
// another character, or that is not valid UTF-8, cannot be carried: an
// encoder writes it as U+FFFD (or refuses it), so a receipt, marker or
// error that echoes an id or thread written that way never matches it.
package xmltext // import "github.com/xmpptrack/xmpptrack/internal/xmltext"

import "unicode/utf8"

// Char reports whether r is a character XML 1.0 allows.
func Char(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// Valid reports whether s is valid UTF-8 made of characters XML allows.
func Valid(s string) bool {
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && w == 1 || !Char(r) {
			return false
		}
		i += w
	}
	return true
}

package xmltext

import "testing"

func TestValid(t *testing.T) {
	for _, s := range []string{"", "plain", "emoji 😀", "U+FFFD \uFFFD", "tab\tnl\ncr\r", "\U0010FFFF", "\uE000\uD7FF"} {
		if !Valid(s) {
			t.Errorf("Valid(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"a\x00b", "x\xff", "\xc3", "nc\uFFFE", "nc\uFFFF", "c\x01", "c\x1f", "c\x0b", "c\x0c",
		"\xed\xa0\x80" /* a lone surrogate, as UTF-8 bytes */} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true, want false", s)
		}
	}
}

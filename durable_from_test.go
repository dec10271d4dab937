package xmpptrack

import (
	"testing"

	"mellium.im/xmpp/jid"
)

// TestFromString: the recorder's string of the evidence's sender follows
// the address, resource and all, whatever came before.
func TestFromString(t *testing.T) {
	var f fromString
	for _, s := range []string{"bob@example.org/pc", "bob@example.org/pc", "bob@example.org/phone", "bob@example.org",
		"example.org", "", "bob@example.org/pc", "carol@example.org/pc"} {
		var j jid.JID
		if s != "" {
			j = jid.MustParse(s)
		}
		if got := f.of(j); got != s {
			t.Fatalf("of(%q) = %q", s, got)
		}
	}
}

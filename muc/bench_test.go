package muc

import (
	"encoding/xml"
	"strconv"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func parsed(b *testing.B, raw string) *stanza.Evidence {
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, err := d.Token()
	if err != nil {
		b.Fatal(err)
	}
	ev, err := stanza.ParseMessage(tok.(xml.StartElement), d)
	if err != nil {
		b.Fatal(err)
	}
	return &ev
}

// BenchmarkRepeatedMarker: 10,000 of our messages that the room reflected,
// and an occupant repeating its displayed marker, for the newest (which
// settles them all) or for the oldest (the 9,999 others stay pending and
// remembered). A repeat should cost O(1), not a walk of the messages.
func BenchmarkRepeatedMarker(b *testing.B) {
	for _, which := range []string{"newest", "oldest"} {
		b.Run(which, func(b *testing.B) {
			r := scriptedRoom(true, false)
			const n = 10_000
			var first, last *tracking.MessageTracker
			for i := range n {
				id := "m" + strconv.Itoa(i)
				last = r.sent(id, "body")
				if i == 0 {
					first = last
				}
				r.message(parsed(b, groupchat("alice", id, `<body>body</body>`+sidOf("s"+strconv.Itoa(i), roomJID))))
			}
			target, marked := "s0", first
			if which == "newest" {
				target, marked = "s"+strconv.Itoa(n-1), last
			}
			marker := parsed(b, groupchat("bob", "b1", displayed(target)))
			r.message(marker)
			if marked.State() != tracking.SeenByRecipient {
				b.Fatalf("marker not applied: %v", marked.State())
			}
			b.ReportAllocs()
			for b.Loop() {
				r.message(marker)
			}
		})
	}
}

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

// BenchmarkRepeatedMarker: 10,000 of our messages, all but the first
// reflected by the room (the first is still unproven, so the room keeps
// remembering every message after it), and an occupant repeating its
// displayed marker, for the newest message or for the second. A repeat
// should cost O(1), not a walk of the messages.
func BenchmarkRepeatedMarker(b *testing.B) {
	for _, which := range []string{"newest", "second"} {
		b.Run(which, func(b *testing.B) {
			r := scriptedRoom(true, false)
			const n = 10_000
			var trackers []*tracking.MessageTracker
			for i := range n {
				id := "m" + strconv.Itoa(i)
				trackers = append(trackers, r.sent(id, "body"))
				if i > 0 {
					r.message(parsed(b, groupchat("alice", id, `<body>body</body>`+sidOf("s"+strconv.Itoa(i), roomJID))))
				}
			}
			target, marked := "s1", trackers[1]
			if which == "newest" {
				target, marked = "s"+strconv.Itoa(n-1), trackers[n-1]
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
			b.ReportMetric(float64(len(r.entries)), "remembered")
		})
	}
}

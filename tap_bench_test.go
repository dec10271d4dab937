package xmpptrack

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/registry"
)

// Messages as ejabberd 23.01 delivers them to alice@localhost (the
// benchmark program's traffic): a receipt and a displayed marker from the
// peer, and a chat message asking for both.
const (
	benchReceipt = `<message xml:lang='en' to='alice@localhost/bench' from='bob@localhost/bench' type='chat' id='r1'><received xmlns='urn:xmpp:receipts' id='kit-msg-9673bd1c'/></message>`
	benchMarker  = `<message xml:lang='en' to='alice@localhost' from='bob@localhost/bench' type='chat' id='d1'><displayed xmlns='urn:xmpp:chat-markers:0' id='kit-msg-9673bd1c'/></message>`
	benchChat    = `<message xml:lang='en' to='alice@localhost/bench' from='bob@localhost/bench' type='chat' id='kit-msg-9673bd1c'><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='kit-msg-9673bd1c'/><body>hello bob, message 1234 of the benchmark</body></message>`
	benchIQ      = `<iq type='result' id='ping1' from='localhost' to='alice@localhost/bench'/>`
)

// benchStanza is one stanza recorded as tokens, replayed to the tap the way
// Session.Serve hands it over: the start element, then a reader of the rest
// that ends with io.EOF.
type benchStanza struct {
	start xml.StartElement
	toks  []xml.Token
	pos   int
}

func recordStanza(b *testing.B, s string) *benchStanza {
	d := xml.NewDecoder(strings.NewReader(s))
	var toks []xml.Token
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		toks = append(toks, xml.CopyToken(tok))
	}
	return &benchStanza{start: toks[0].(xml.StartElement), toks: toks[1:]}
}

func (s *benchStanza) Token() (xml.Token, error) {
	if s.pos >= len(s.toks) {
		return nil, io.EOF
	}
	s.pos++
	return s.toks[s.pos-1], nil
}

// readingApp is an application handler that reads every token it is given.
var readingApp = xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	for {
		if _, err := t.Token(); err != nil {
			return nil
		}
	}
})

// BenchmarkTap measures the tap on one incoming stanza: reading, parsing
// and observing it, and handing it on. The senders' case has no application
// handler; the other cases have one that reads the whole stanza (receipt
// answers and markers are off, so the recipient side does not count).
// Receipts and markers name no pending message: the registry's lookup
// is included, transitions are not (see the tracking benchmarks).
func BenchmarkTap(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   string
		app  xmpp.Handler
	}{
		{"receipt", benchReceipt, nil},
		{"marker", benchMarker, nil},
		{"receipt-app", benchReceipt, readingApp},
		{"chat-app", benchChat, readingApp},
		{"iq-app", benchIQ, readingApp},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := newTapClient(b, Config{NoReceipts: true, NoMarkers: true})
			h := c.tap(bc.app)
			s := recordStanza(b, bc.in)
			var rw xmlstream.TokenReadEncoder = struct {
				xml.TokenReader
				xmlstream.Encoder
			}{s, xml.NewEncoder(io.Discard)}
			b.ReportAllocs()
			for b.Loop() {
				s.pos = 0
				start := s.start
				if err := h.HandleXMPP(rw, &start); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPeerCache checks that the tap's cache of conversation keys gives,
// for any sequence of senders, the keys registry.PeerOf gives: senders
// that alternate, come back after being evicted, have no resource, or are
// the zero JID (our own server).
func TestPeerCache(t *testing.T) {
	var pc peerCache
	senders := []string{"bob@example.org/pc", "bob@example.org/phone", "bob@example.org/pc", "example.org",
		"", "carol@example.org", "bob@example.org", "bob@example.org/pc", "", "room@muc.example.org/bob"}
	for round := range 2 {
		for _, s := range senders {
			var from jid.JID
			if s != "" {
				from = jid.MustParse(s)
			}
			if got, want := pc.of(from), registry.PeerOf(from); got != want {
				t.Fatalf("round %d, sender %q: keys %+v, want %+v", round, s, got, want)
			}
		}
	}
	if got := (*peerCache)(nil).of(jid.MustParse("bob@example.org/pc")); got.Full != "bob@example.org/pc" {
		t.Fatalf("nil cache: %+v", got)
	}
}

package stanza_test

import (
	"encoding/xml"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack/stanza"
	"mellium.im/xmlstream"
	xstanza "mellium.im/xmpp/stanza"
)

// smSeeds are seeds shared by the XEP-0198 fuzz targets.
var smSeeds = []string{
	prosodyEnabled, ejabberdEnabled, prosodyResumed, ejabberdResumed, prosodyFailed, prosodyFinalAck,
	`<enable xmlns='urn:xmpp:sm:3' resume='true' max='600'/>`,
	`<enable xmlns='urn:xmpp:sm:3' resume='1'/>`,
	`<enabled xmlns='urn:xmpp:sm:3' id='x' location='[::1]:5222'/>`,
	`<resume xmlns='urn:xmpp:sm:3' previd='OQfkUrMcMi8I' h='4294967295'/>`,
	`<failed xmlns='urn:xmpp:sm:3'/>`,
	`<failed xmlns='urn:xmpp:sm:3'><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`,
	`<r xmlns='urn:xmpp:sm:3'/>`,
	`<a xmlns='urn:xmpp:sm:3' h='+1'/>`,
	`<a xmlns='urn:xmpp:sm:3' h='4294967296'/>`,
	`<a xmlns='urn:xmpp:sm:3'><a h='1'/></a>`,
}

var extSeeds = []string{
	`<request xmlns='urn:xmpp:receipts'/>`,
	`<received id='kit-msg-ad890374' xmlns='urn:xmpp:receipts'/>`,
	`<markable xmlns='urn:xmpp:chat-markers:0'/>`,
	`<displayed id='kit-msg-ad890374' xmlns='urn:xmpp:chat-markers:0'/>`,
	`<received xmlns='urn:xmpp:chat-markers:0' id='x'/>`,
	`<origin-id id='kit-oid-6e3f96e0' xmlns='urn:xmpp:sid:0'/>`,
	`<stanza-id id='SXLS9VFxZUJcd41twmXObp4o' xmlns='urn:xmpp:sid:0' by='bob@localhost'/>`,
	`<stanza-id id='a&amp;b' xmlns='urn:xmpp:sid:0' by='&#x9;'/>`,
}

func addSeeds(f *testing.F, seeds ...[]string) {
	for _, ss := range seeds {
		for _, s := range ss {
			f.Add(s)
		}
	}
}

func FuzzEnable(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Enable](t, in) })
}

func FuzzEnabled(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Enabled](t, in) })
}

func FuzzResume(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Resume](t, in) })
}

func FuzzResumed(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Resumed](t, in) })
}

func FuzzFailed(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Failed](t, in) })
}

func FuzzAckRequest(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.AckRequest](t, in) })
}

func FuzzAck(f *testing.F) {
	addSeeds(f, smSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Ack](t, in) })
}

func FuzzReceiptRequest(f *testing.F) {
	addSeeds(f, extSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.ReceiptRequest](t, in) })
}

func FuzzReceipt(f *testing.F) {
	addSeeds(f, extSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Receipt](t, in) })
}

func FuzzMarkable(f *testing.F) {
	addSeeds(f, extSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Markable](t, in) })
}

func FuzzMarker(f *testing.F) {
	addSeeds(f, extSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.Marker](t, in) })
}

func FuzzOriginID(f *testing.F) {
	addSeeds(f, extSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.OriginID](t, in) })
}

func FuzzStanzaID(f *testing.F) {
	addSeeds(f, extSeeds)
	f.Fuzz(func(t *testing.T, in string) { fuzzDecode[stanza.StanzaID](t, in) })
}

func FuzzParseH(f *testing.F) {
	for _, s := range append(badH, "0", "7", "0042", "4294967295", "4294967294", "+7", " 7\n", "-0") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, err := stanza.ParseH(in)
		if err != nil {
			if h != 0 {
				t.Fatalf("ParseH(%q) = %d with error %v", in, h, err)
			}
			return
		}
		// Only digits, after an optional sign, within XML white space.
		if d := strings.TrimLeft(strings.Trim(in, " \t\r\n"), "+-"); d == "" || strings.TrimLeft(d, "0123456789") != "" {
			t.Fatalf("ParseH(%q) accepted non-digits", in)
		}
		// The canonical form parses to the same value.
		again, err := stanza.ParseH(xmlHString(h))
		if err != nil || again != h {
			t.Fatalf("ParseH(%q) = %d, re-parse gives %d, %v", in, h, again, err)
		}
	})
}

func xmlHString(h uint32) string {
	s, err := xml.Marshal(stanza.Ack{H: h})
	if err != nil {
		panic(err)
	}
	ack, err := decode[stanza.Ack](string(s))
	if err != nil || ack.H != h {
		panic("ack round trip")
	}
	str := string(s)
	i := strings.Index(str, `h="`) + 3
	return str[i : i+strings.IndexByte(str[i:], '"')]
}

// rawReader gives the decoder's raw tokens: no namespace resolution and no
// check that end elements match, to feed ParseMessage unbalanced input.
type rawReader struct{ d *xml.Decoder }

func (r rawReader) Token() (xml.Token, error) { return r.d.RawToken() }

func FuzzParseMessage(f *testing.F) {
	for _, tc := range parseCases {
		f.Add(tc.in)
	}
	f.Add(`<message><body>` + strings.Repeat("é", 100) + `</body></message>`)
	f.Add(`<message id='` + strings.Repeat("x", stanza.MaxIDLen+1) + `'/>`)
	f.Add(`<message><thread>` + strings.Repeat("x", stanza.MaxIDLen+1) + `</thread></message>`)
	f.Add(`<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>`)
	f.Add(`<message></x></message>`)
	f.Add(`<A type='error'><error>`)
	f.Fuzz(func(t *testing.T, in string) {
		// Unbalanced and unresolved tokens must not panic either.
		d := xml.NewDecoder(strings.NewReader(in))
		if start, ok := firstStart(rawReader{d}); ok {
			ev, _ := stanza.ParseMessage(start, rawReader{d})
			checkEvidence(t, &ev, false)
		}
		// Through xmlstream.Inner, which ends with io.EOF.
		d = xml.NewDecoder(strings.NewReader(in))
		if start, ok := firstStart(d); ok {
			ev, _ := stanza.ParseMessage(start, xmlstream.Inner(d))
			checkEvidence(t, &ev, false)
		}

		d = xml.NewDecoder(strings.NewReader(in))
		start, ok := firstStart(d)
		if !ok {
			return
		}
		ev, err := stanza.ParseMessage(start, d)
		checkEvidence(t, &ev, false)
		if err != nil {
			return
		}
		// What parses re-encodes to a message that parses the same.
		for _, space := range []string{"", "jabber:client"} {
			out := encodeEvidence(&ev, space)
			d := xml.NewDecoder(strings.NewReader(out))
			start, _ := firstStart(d)
			again, err := stanza.ParseMessage(start, d)
			if err != nil {
				t.Fatalf("re-parse of %q (from %q): %v", out, in, err)
			}
			if a, b := view(&ev), view(&again); !equalViews(a, b) {
				t.Fatalf("re-parse of %q (from %q):\n got %v\nwant %v", out, in, b, a)
			}
		}
	})
}

func equalViews(a, b *evView) bool {
	return reflect.DeepEqual(a, b)
}

// checkEvidence asserts the bounds ParseMessage promises, even for
// evidence returned with an error.
func checkEvidence(t *testing.T, ev *stanza.Evidence, nested bool) {
	t.Helper()
	for _, id := range []string{ev.ID, ev.Receipt, ev.Marker.ID, ev.Thread, ev.OriginID, ev.OccupantID} {
		if len(id) > stanza.MaxIDLen {
			t.Fatalf("id of %d bytes", len(id))
		}
	}
	if len(ev.StanzaIDs) > 32 {
		t.Fatalf("%d stanza-ids", len(ev.StanzaIDs))
	}
	for _, s := range ev.StanzaIDs {
		if s.ID == "" || s.By == "" || len(s.ID) > stanza.MaxIDLen || len(s.By) > stanza.MaxIDLen {
			t.Fatalf("bad stanza-id %+v", s)
		}
	}
	if len(ev.Body) > stanza.MaxBodyLen || !utf8.ValidString(ev.Body) {
		t.Fatalf("body of %d bytes, valid UTF-8 %v", len(ev.Body), utf8.ValidString(ev.Body))
	}
	if (ev.Marker.Type == 0) != (ev.Marker.ID == "") {
		t.Fatalf("half a marker: %+v", ev.Marker)
	}
	if ev.Error != nil && (ev.Type != xstanza.ErrorMessage || ev.Error.Condition == "" || len(ev.Error.Text) > 8) {
		t.Fatalf("bad error %+v for type %q", ev.Error, ev.Type)
	}
	if nested && (ev.Carbon != stanza.CarbonNone || ev.Forwarded != nil) {
		t.Fatalf("nested carbon parsed")
	}
	if ev.Forwarded != nil {
		if ev.Carbon == stanza.CarbonNone {
			t.Fatalf("forwarded without carbon")
		}
		checkEvidence(t, ev.Forwarded, true)
	}
}

package stanza_test

import (
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/xmpptrack/xmpptrack/stanza"
	xstanza "mellium.im/xmpp/stanza"
)

// Messages as Prosody 0.12.3 and ejabberd 23.01 deliver them (captured on loopback).
const (
	prosodyChat     = `<message type='chat' to='bob@localhost' xml:lang='en' id='kit-msg-ad890374' from='alice@localhost/smoke'><body>hello bob (smoke)</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/><origin-id id='kit-oid-6e3f96e0' xmlns='urn:xmpp:sid:0'/><stanza-id id='SXLS9VFxZUJcd41twmXObp4o' xmlns='urn:xmpp:sid:0' by='bob@localhost'/></message>`
	prosodyReceipt  = `<message type='chat' to='alice@localhost/smoke' xml:lang='en' id='kit-rcpt-b41d04' from='bob@localhost/smoke'><received id='kit-msg-ad890374' xmlns='urn:xmpp:receipts'/><stanza-id id='2b_FLN4tWGF_I7TgIY7yJo9X' xmlns='urn:xmpp:sid:0' by='alice@localhost'/></message>`
	prosodyMarker   = `<message type='chat' to='alice@localhost' xml:lang='en' id='kit-disp-09921c' from='bob@localhost/smoke'><displayed id='kit-msg-ad890374' xmlns='urn:xmpp:chat-markers:0'/><stanza-id id='1YJf8UtTVJe73iLdHoIrkVNv' xmlns='urn:xmpp:sid:0' by='alice@localhost'/></message>`
	ejabberdChat    = `<message xml:lang='en' to='bob@localhost' from='alice@localhost/smoke' type='chat' id='kit-msg-9673bd1c'><archived by='bob@localhost' id='1795316701432762' xmlns='urn:xmpp:mam:tmp'/><stanza-id by='bob@localhost' id='1795316701432762' xmlns='urn:xmpp:sid:0'/><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='kit-oid-ba56061d'/><body>hello bob (smoke)</body></message>`
	ejabberdReceipt = `<message xml:lang='en' to='alice@localhost/smoke' from='bob@localhost/smoke' type='chat' id='kit-rcpt-83c758'><received xmlns='urn:xmpp:receipts' id='kit-msg-9673bd1c'/></message>`
	ejabberdMarker  = `<message xml:lang='en' to='alice@localhost' from='bob@localhost/smoke' type='chat' id='kit-disp-1d5138'><displayed xmlns='urn:xmpp:chat-markers:0' id='kit-msg-9673bd1c'/></message>`
	prosodyMUC      = `<message type='groupchat' to='alice@localhost/smoke' xml:lang='en' id='kit-muc-b2850da0' from='test@conference.localhost/alice'><body>hello room (smoke)</body><origin-id id='kit-muc-oid-a01d855a' xmlns='urn:xmpp:sid:0'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='p9yqkMQJGyVyYEcAqegNLzWW+39BPX9CEcEcQp6wGSY='/><stanza-id id='HHrUwehAzAfzGlBC0fO7-MQL' xmlns='urn:xmpp:sid:0' by='test@conference.localhost'/></message>`
	ejabberdMUC     = `<message xml:lang='en' to='alice@localhost/smoke' from='test@conference.localhost/alice' type='groupchat' id='kit-muc-0ca30017'><archived by='test@conference.localhost' id='1795316702478370' xmlns='urn:xmpp:mam:tmp'/><stanza-id by='test@conference.localhost' id='1795316702478370' xmlns='urn:xmpp:sid:0'/><origin-id xmlns='urn:xmpp:sid:0' id='kit-muc-oid-9ad04f8a'/><body>hello room (smoke)</body></message>`
	// Re-sent after resumption with a delay (as Prosody re-sends after a resumption).
	prosodyResent  = `<message type='chat' to='bob@localhost' id='m1' from='alice@localhost/smoke'><body>hi</body><delay stamp='2024-01-01T00:00:00Z' xmlns='urn:xmpp:delay' from='alice@localhost'/></message>`
	ejabberdResent = `<message type='chat' to='bob@localhost' id='m1' from='alice@localhost/smoke'><body>hi</body><delay from='localhost' stamp='2024-01-01T00:00:00.985215Z' xmlns='urn:xmpp:delay'>Resent</delay></message>`
)

var ns = struct{ rcpt, mark, sid, carbons, fwd, stanzas string }{
	`xmlns='urn:xmpp:receipts'`, `xmlns='urn:xmpp:chat-markers:0'`, `xmlns='urn:xmpp:sid:0'`,
	`xmlns='urn:xmpp:carbons:2'`, `xmlns='urn:xmpp:forward:0'`, `xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'`,
}

type parseCase struct {
	name string
	in   string
	want evView
}

var parseCases = []parseCase{
	{"prosody chat", prosodyChat, evView{
		From: "alice@localhost/smoke", To: "bob@localhost", ID: "kit-msg-ad890374", Type: xstanza.ChatMessage,
		Body: "hello bob (smoke)", ReceiptRequested: true, Markable: true, OriginID: "kit-oid-6e3f96e0",
		StanzaIDs: []stanza.StanzaID{{ID: "SXLS9VFxZUJcd41twmXObp4o", By: "bob@localhost"}},
	}},
	{"prosody receipt", prosodyReceipt, evView{
		From: "bob@localhost/smoke", To: "alice@localhost/smoke", ID: "kit-rcpt-b41d04", Type: xstanza.ChatMessage,
		Receipt:   "kit-msg-ad890374",
		StanzaIDs: []stanza.StanzaID{{ID: "2b_FLN4tWGF_I7TgIY7yJo9X", By: "alice@localhost"}},
	}},
	{"prosody marker", prosodyMarker, evView{
		From: "bob@localhost/smoke", To: "alice@localhost", ID: "kit-disp-09921c", Type: xstanza.ChatMessage,
		Marker:    stanza.Marker{Type: stanza.MarkerDisplayed, ID: "kit-msg-ad890374"},
		StanzaIDs: []stanza.StanzaID{{ID: "1YJf8UtTVJe73iLdHoIrkVNv", By: "alice@localhost"}},
	}},
	{"ejabberd chat", ejabberdChat, evView{
		From: "alice@localhost/smoke", To: "bob@localhost", ID: "kit-msg-9673bd1c", Type: xstanza.ChatMessage,
		Body: "hello bob (smoke)", ReceiptRequested: true, Markable: true, OriginID: "kit-oid-ba56061d",
		StanzaIDs: []stanza.StanzaID{{ID: "1795316701432762", By: "bob@localhost"}},
	}},
	{"ejabberd receipt", ejabberdReceipt, evView{
		From: "bob@localhost/smoke", To: "alice@localhost/smoke", ID: "kit-rcpt-83c758", Type: xstanza.ChatMessage,
		Receipt: "kit-msg-9673bd1c",
	}},
	{"ejabberd marker", ejabberdMarker, evView{
		From: "bob@localhost/smoke", To: "alice@localhost", ID: "kit-disp-1d5138", Type: xstanza.ChatMessage,
		Marker: stanza.Marker{Type: stanza.MarkerDisplayed, ID: "kit-msg-9673bd1c"},
	}},
	{"prosody muc reflection", prosodyMUC, evView{
		From: "test@conference.localhost/alice", To: "alice@localhost/smoke", ID: "kit-muc-b2850da0", Type: xstanza.GroupChatMessage,
		Body: "hello room (smoke)", OriginID: "kit-muc-oid-a01d855a", OccupantID: "p9yqkMQJGyVyYEcAqegNLzWW+39BPX9CEcEcQp6wGSY=",
		StanzaIDs: []stanza.StanzaID{{ID: "HHrUwehAzAfzGlBC0fO7-MQL", By: "test@conference.localhost"}},
	}},
	{"ejabberd muc reflection", ejabberdMUC, evView{
		From: "test@conference.localhost/alice", To: "alice@localhost/smoke", ID: "kit-muc-0ca30017", Type: xstanza.GroupChatMessage,
		Body: "hello room (smoke)", OriginID: "kit-muc-oid-9ad04f8a",
		StanzaIDs: []stanza.StanzaID{{ID: "1795316702478370", By: "test@conference.localhost"}},
	}},
	{"prosody resent with delay", prosodyResent, evView{
		From: "alice@localhost/smoke", To: "bob@localhost", ID: "m1", Type: xstanza.ChatMessage, Body: "hi", HasDelay: true,
	}},
	{"ejabberd resent with delay", ejabberdResent, evView{
		From: "alice@localhost/smoke", To: "bob@localhost", ID: "m1", Type: xstanza.ChatMessage, Body: "hi", HasDelay: true,
	}},
	{"marker with thread", `<message from='bob@localhost/a' type='chat'><thread parent='p'>t-1</thread><displayed ` + ns.mark + ` id='m7'/></message>`, evView{
		From: "bob@localhost/a", Type: xstanza.ChatMessage, Thread: "t-1",
		Marker: stanza.Marker{Type: stanza.MarkerDisplayed, ID: "m7"},
	}},
	{"legacy received marker next to receipt (Conversations)", `<message from='bob@localhost/a' type='chat'><received ` + ns.rcpt + ` id='m1'/><received ` + ns.mark + ` id='m1'/></message>`, evView{
		From: "bob@localhost/a", Type: xstanza.ChatMessage, Receipt: "m1",
		Marker: stanza.Marker{Type: stanza.MarkerReceived, ID: "m1"},
	}},
	{"first of each wins", `<message><body>one</body><body xml:lang='de'>zwei</body><thread>a</thread><thread>b</thread><received ` + ns.rcpt + ` id='r1'/><received ` + ns.rcpt + ` id='r2'/><acknowledged ` + ns.mark + ` id='k1'/><displayed ` + ns.mark + ` id='k2'/><origin-id ` + ns.sid + ` id='o1'/><origin-id ` + ns.sid + ` id='o2'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='c1'/><occupant-id xmlns='urn:xmpp:occupant-id:0' id='c2'/><stanza-id ` + ns.sid + ` id='s1' by='a@x'/><stanza-id ` + ns.sid + ` id='s2' by='b@x'/></message>`, evView{
		Type: xstanza.NormalMessage, Body: "one", Thread: "a", Receipt: "r1", OriginID: "o1", OccupantID: "c1",
		Marker:    stanza.Marker{Type: stanza.MarkerAcknowledged, ID: "k1"},
		StanzaIDs: []stanza.StanzaID{{ID: "s1", By: "a@x"}, {ID: "s2", By: "b@x"}},
	}},
	{"malformed extensions are ignored", `<message type='chat'><received ` + ns.rcpt + `/><displayed ` + ns.mark + ` id=''/><origin-id ` + ns.sid + `/><stanza-id ` + ns.sid + ` id='s'/><stanza-id ` + ns.sid + ` by='b'/><received ` + ns.rcpt + ` id='r'/><markable ` + ns.mark + `/><displayed ` + ns.mark + ` id='d'/><unknown-marker ` + ns.mark + ` id='u'/></message>`, evView{
		Type: xstanza.ChatMessage, Receipt: "r", Markable: true, Marker: stanza.Marker{Type: stanza.MarkerDisplayed, ID: "d"},
	}},
	{"private message from a room occupant", `<message type='chat' from='test@conference.localhost/carol' to='alice@localhost/smoke' id='pm1'><body>psst</body><markable ` + ns.mark + `/><x xmlns='http://jabber.org/protocol/muc#user'><item/></x></message>`, evView{
		From: "test@conference.localhost/carol", To: "alice@localhost/smoke", ID: "pm1", Type: xstanza.ChatMessage,
		Body: "psst", Markable: true, MUCUser: true,
	}},
	{"muc#user only as a child of the message", `<message type='chat'><x xmlns='http://jabber.org/protocol/muc'/><body>hi<x xmlns='http://jabber.org/protocol/muc#user'/></body><y xmlns='http://jabber.org/protocol/muc#user'/></message>`, evView{
		Type: xstanza.ChatMessage, Body: "hi",
	}},
	{"unknown and wrong-namespace children", `<message type='bogus'><body xmlns='urn:other'>no</body><x xmlns='jabber:x:oob'><body>deep</body><received ` + ns.rcpt + ` id='deep'/></x><request xmlns='urn:other'/><body>yes</body></message>`, evView{
		Type: xstanza.NormalMessage, Body: "yes",
	}},
	{"jabber:client children and text forms", `<message xmlns='jabber:client' type='headline'><body xmlns='jabber:client'>a &amp; <![CDATA[<b>]]><!-- c --><i>x</i> é</body></message>`, evView{
		Type: xstanza.HeadlineMessage, Body: "a & <b> é",
	}},
	{"error with original payload", `<message type='error' from='bob@localhost' to='alice@localhost/smoke' id='m1'><body>hello</body><request ` + ns.rcpt + `/><error type='cancel'><service-unavailable ` + ns.stanzas + `/><text ` + ns.stanzas + ` xml:lang='en'>gone fishing</text></error></message>`, evView{
		From: "bob@localhost", To: "alice@localhost/smoke", ID: "m1", Type: xstanza.ErrorMessage, Body: "hello", ReceiptRequested: true,
		Error: &errView{Type: xstanza.Cancel, Condition: xstanza.ServiceUnavailable, Text: map[string]string{"en": "gone fishing"}},
	}},
	// dino#672: server-generated, from = original recipient, by = own server.
	{"error without payload", `<message type='error' from='jdoe@example.com' id='123'><error type='wait' by='chat.example'><remote-server-timeout ` + ns.stanzas + `/><text ` + ns.stanzas + `>timeout</text><app xmlns='urn:app'/></error></message>`, evView{
		From: "jdoe@example.com", ID: "123", Type: xstanza.ErrorMessage,
		Error: &errView{Type: xstanza.Wait, By: "chat.example", Condition: xstanza.RemoteServerTimeout, Text: map[string]string{"": "timeout"}},
	}},
	{"error: text before condition, unknown type", `<message type='error' id='e'><error type='strange'><text ` + ns.stanzas + `/><text ` + ns.stanzas + ` xml:lang='de'>weg</text><text ` + ns.stanzas + ` xml:lang='de'>dup</text><recipient-unavailable ` + ns.stanzas + `/><gone ` + ns.stanzas + `/></error><error><forbidden ` + ns.stanzas + `/></error></message>`, evView{
		ID: "e", Type: xstanza.ErrorMessage,
		Error: &errView{Condition: xstanza.RecipientUnavailable, Text: map[string]string{"de": "weg"}},
	}},
	{"error without error child", `<message type='error' id='e'/>`, evView{
		ID: "e", Type: xstanza.ErrorMessage, Error: &errView{Condition: xstanza.UndefinedCondition},
	}},
	{"error with unknown condition and invalid by", `<message type='error' id='e'><error type='cancel' by='@@'><made-up ` + ns.stanzas + `/></error></message>`, evView{
		ID: "e", Type: xstanza.ErrorMessage, Error: &errView{Type: xstanza.Cancel, Condition: xstanza.UndefinedCondition},
	}},
	{"error child ignored on non-error message", `<message type='chat'><error type='cancel'><forbidden ` + ns.stanzas + `/></error></message>`, evView{
		Type: xstanza.ChatMessage,
	}},
	// Test list #9: markers in errors are reported but Type says error.
	{"error carrying a marker", `<message type='error' id='x'><displayed ` + ns.mark + ` id='m1'/><error type='cancel'><item-not-found ` + ns.stanzas + `/></error></message>`, evView{
		ID: "x", Type: xstanza.ErrorMessage, Marker: stanza.Marker{Type: stanza.MarkerDisplayed, ID: "m1"},
		Error: &errView{Type: xstanza.Cancel, Condition: xstanza.ItemNotFound},
	}},
	{"received carbon of a receipt", `<message from='alice@localhost' to='alice@localhost/phone' type='chat'><received ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client' from='bob@localhost/a' to='alice@localhost/laptop' type='chat' id='r9'><received ` + ns.rcpt + ` id='m1'/></message></forwarded></received></message>`, evView{
		From: "alice@localhost", To: "alice@localhost/phone", Type: xstanza.ChatMessage, Carbon: stanza.CarbonReceived,
		Forwarded: &evView{From: "bob@localhost/a", To: "alice@localhost/laptop", ID: "r9", Type: xstanza.ChatMessage, Receipt: "m1"},
	}},
	{"sent carbon of a message", `<message xmlns='jabber:client' from='alice@localhost' to='alice@localhost/phone' type='chat'><sent ` + ns.carbons + `><forwarded ` + ns.fwd + `><delay xmlns='urn:xmpp:delay' stamp='2024-01-01T00:00:00Z'/><message xmlns='jabber:client' from='alice@localhost/laptop' to='bob@localhost' type='chat' id='m2'><body>hi</body><request ` + ns.rcpt + `/><origin-id ` + ns.sid + ` id='o2'/></message></forwarded></sent></message>`, evView{
		From: "alice@localhost", To: "alice@localhost/phone", Type: xstanza.ChatMessage, Carbon: stanza.CarbonSent,
		Forwarded: &evView{From: "alice@localhost/laptop", To: "bob@localhost", ID: "m2", Type: xstanza.ChatMessage, Body: "hi", ReceiptRequested: true, OriginID: "o2"},
	}},
	{"carbon of an error", `<message from='alice@localhost' type='error'><received ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client' from='bob@localhost' type='error' id='m3'><error type='cancel'><service-unavailable ` + ns.stanzas + `/></error></message></forwarded></received></message>`, evView{
		From: "alice@localhost", Type: xstanza.ErrorMessage, Carbon: stanza.CarbonReceived,
		Error: &errView{Condition: xstanza.UndefinedCondition},
		Forwarded: &evView{From: "bob@localhost", ID: "m3", Type: xstanza.ErrorMessage,
			Error: &errView{Type: xstanza.Cancel, Condition: xstanza.ServiceUnavailable}},
	}},
	{"nested forward is ignored", `<message from='alice@localhost'><received ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client' from='eve@evil/x' id='outer'><sent ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client' from='bob@localhost/a' id='inner'><received ` + ns.rcpt + ` id='m1'/></message></forwarded></sent><displayed ` + ns.mark + ` id='m2'/></message></forwarded></received></message>`, evView{
		From: "alice@localhost", Type: xstanza.NormalMessage, Carbon: stanza.CarbonReceived,
		Forwarded: &evView{From: "eve@evil/x", ID: "outer", Type: xstanza.NormalMessage,
			Marker: stanza.Marker{Type: stanza.MarkerDisplayed, ID: "m2"}},
	}},
	{"only the first carbon, forwarded and message", `<message><sent ` + ns.carbons + `><other/><forwarded xmlns='urn:other'><message xmlns='jabber:client' id='wrong-ns'/></forwarded><forwarded ` + ns.fwd + `><delay xmlns='urn:xmpp:delay'/><iq xmlns='jabber:client'/><message xmlns='jabber:client' id='first'/><message xmlns='jabber:client' id='second'/></forwarded><forwarded ` + ns.fwd + `><message xmlns='jabber:client' id='third'/></forwarded></sent><received ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client' id='fourth'/></forwarded></received></message>`, evView{
		Type: xstanza.NormalMessage, Carbon: stanza.CarbonSent,
		Forwarded: &evView{ID: "first", Type: xstanza.NormalMessage},
	}},
	{"carbon without forwarded message", `<message from='alice@localhost'><received ` + ns.carbons + `/><private ` + ns.carbons + `/></message>`, evView{
		From: "alice@localhost", Type: xstanza.NormalMessage, Carbon: stanza.CarbonReceived,
	}},
	{"empty message", `<message/>`, evView{Type: xstanza.NormalMessage}},
}

func TestParseMessage(t *testing.T) {
	for _, tc := range parseCases {
		for _, inner := range []bool{false, true} {
			ev, err := parse(t, tc.in, inner)
			if err != nil {
				t.Errorf("%s (inner=%v): %v", tc.name, inner, err)
				continue
			}
			if got := view(&ev); !reflect.DeepEqual(got, &tc.want) {
				t.Errorf("%s (inner=%v):\n got %v\nwant %v", tc.name, inner, got, &tc.want)
			}
		}
	}
}

// Every parsed case re-encodes to a message that parses to the same value.
func TestParseMessageReencode(t *testing.T) {
	for _, tc := range parseCases {
		checkReencode(t, tc.in)
	}
}

func checkReencode(t *testing.T, in string) {
	t.Helper()
	ev, err := parse(t, in, false)
	if err != nil {
		return
	}
	for _, space := range []string{"", "jabber:client"} {
		out := encodeEvidence(&ev, space)
		again, err := parse(t, out, false)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", out, in, err)
		}
		if a, b := view(&ev), view(&again); !reflect.DeepEqual(a, b) {
			t.Fatalf("re-parse of %q (from %q):\n got %v\nwant %v", out, in, b, a)
		}
	}
}

func TestParseMessageErrors(t *testing.T) {
	long := strings.Repeat("x", stanza.MaxIDLen+1)
	many := strings.Repeat(`<stanza-id `+ns.sid+` id='s' by='b@x'/>`, 33)
	for _, tc := range []struct {
		name, in string
		el, attr string
		want     error
	}{
		{"not a message", `<presence/>`, "presence", "", stanza.ErrUnexpectedElement},
		{"message in other namespace", `<message xmlns='urn:other'/>`, "message", "", stanza.ErrUnexpectedElement},
		{"long id", `<message id='` + long + `'/>`, "message", "id", stanza.ErrIDTooLong},
		{"long from", `<message from='` + long + `'/>`, "message", "from", stanza.ErrIDTooLong},
		{"invalid from", `<message from='a@b@c/'/>`, "message", "from", stanza.ErrInvalidJID},
		{"invalid to", `<message to='@x'/>`, "message", "to", stanza.ErrInvalidJID},
		{"long receipt id", `<message><received ` + ns.rcpt + ` id='` + long + `'/></message>`, "received", "id", stanza.ErrIDTooLong},
		{"long marker id", `<message><displayed ` + ns.mark + ` id='` + long + `'/></message>`, "displayed", "id", stanza.ErrIDTooLong},
		{"long origin-id", `<message><origin-id ` + ns.sid + ` id='` + long + `'/></message>`, "origin-id", "id", stanza.ErrIDTooLong},
		{"long stanza-id", `<message><stanza-id ` + ns.sid + ` by='a' id='` + long + `'/></message>`, "stanza-id", "id", stanza.ErrIDTooLong},
		{"long stanza-id by", `<message><stanza-id ` + ns.sid + ` id='a' by='` + long + `'/></message>`, "stanza-id", "by", stanza.ErrIDTooLong},
		{"long occupant-id", `<message><occupant-id xmlns='urn:xmpp:occupant-id:0' id='` + long + `'/></message>`, "occupant-id", "id", stanza.ErrIDTooLong},
		{"long thread", `<message><thread>` + long + `</thread></message>`, "thread", "", stanza.ErrIDTooLong},
		{"long id in carbon", `<message><sent ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client'><received ` + ns.rcpt + ` id='` + long + `'/></message></forwarded></sent></message>`, "received", "id", stanza.ErrIDTooLong},
		{"too many stanza-ids", `<message>` + many + `</message>`, "stanza-id", "", stanza.ErrTooManyElements},
		{"error after valid data", `<message id='ok'><body>b</body><origin-id ` + ns.sid + ` id='` + long + `'/><received ` + ns.rcpt + ` id='r'/></message>`, "origin-id", "id", stanza.ErrIDTooLong},
	} {
		for _, inner := range []bool{false, true} {
			_, err := parse(t, tc.in, inner) // also checks the message was consumed
			var fe *stanza.FieldError
			if !errors.Is(err, tc.want) || !errors.As(err, &fe) || fe.Element != tc.el || fe.Attr != tc.attr {
				t.Errorf("%s (inner=%v): error = %v; want *FieldError{%q, %q} wrapping %v", tc.name, inner, err, tc.el, tc.attr, tc.want)
			}
		}
	}
}

func TestParseMessageLimits(t *testing.T) {
	ev, err := parse(t, `<message><stanza-id `+ns.sid+` id='`+strings.Repeat("i", stanza.MaxIDLen)+`' by='b'/><thread>`+strings.Repeat("t", stanza.MaxIDLen)+`</thread></message>`, false)
	if err != nil || len(ev.StanzaIDs[0].ID) != stanza.MaxIDLen || len(ev.Thread) != stanza.MaxIDLen {
		t.Fatalf("ids of exactly MaxIDLen: %v", err)
	}
	for _, body := range []string{
		strings.Repeat("a", stanza.MaxBodyLen+10),
		strings.Repeat("é", stanza.MaxBodyLen/2+1),
		"x" + strings.Repeat("€", stanza.MaxBodyLen/3+1),
		"xy" + strings.Repeat("𝄞", stanza.MaxBodyLen/4+1),
		strings.Repeat("a", stanza.MaxBodyLen-1) + "<![CDATA[bcd]]>" + strings.Repeat("e", 10),
	} {
		ev, err := parse(t, `<message><body>`+body+`</body><received `+ns.rcpt+` id='after'/></message>`, false)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(ev.Body); n > stanza.MaxBodyLen || n < stanza.MaxBodyLen-3 || !utf8.ValidString(ev.Body) || !strings.HasPrefix(body, ev.Body[:n-4]) {
			t.Errorf("body of %d bytes cut to %d bytes (valid UTF-8: %v)", len(body), n, utf8.ValidString(ev.Body))
		}
		if ev.Receipt != "after" {
			t.Errorf("receipt after a long body lost")
		}
	}
	ev, err = parse(t, `<message><body>`+strings.Repeat("a", stanza.MaxBodyLen)+`</body></message>`, false)
	if err != nil || len(ev.Body) != stanza.MaxBodyLen {
		t.Errorf("body of exactly MaxBodyLen: %d, %v", len(ev.Body), err)
	}
	many := `<message type='error'><error>` + strings.Repeat(`<text `+ns.stanzas+` xml:lang='`+strings.Repeat("l", 65)+`'>x</text>`, 3)
	for i := range 20 {
		many += `<text ` + ns.stanzas + ` xml:lang='l` + string(rune('a'+i)) + `'>x</text>`
	}
	ev, err = parse(t, many+`</error></message>`, false)
	if err != nil || len(ev.Error.Text) != 8 {
		t.Errorf("error texts kept: %d, %v; want 8", len(ev.Error.Text), err)
	}
}

func TestParseMessageReadErrors(t *testing.T) {
	for _, in := range []string{
		`<message><body>unterminated`,
		`<message><received ` + ns.carbons + `><forwarded ` + ns.fwd + `><message xmlns='jabber:client'><body>x</body>`,
		`<message type='error'><error><text ` + ns.stanzas + `>x`,
		`<message><x><y></x></message>`,
	} {
		d := xmlDecoder(in)
		start, _ := firstStart(d)
		if _, err := stanza.ParseMessage(start, d); err == nil || isReadError(err) == false {
			t.Errorf("%q: error %v; want a read error", in, err)
		}
	}
	// An inner message must end with its own end element even when the reader
	// ends with io.EOF after the outer message's children.
	r := &scripted{steps: []step{
		{xml.StartElement{Name: xml.Name{Space: stanza.NSCarbons, Local: "received"}}, nil},
		{xml.StartElement{Name: xml.Name{Space: stanza.NSForward, Local: "forwarded"}}, nil},
		{xml.StartElement{Name: xml.Name{Space: "jabber:client", Local: "message"}}, nil},
	}}
	if _, err := stanza.ParseMessage(xml.StartElement{Name: xml.Name{Local: "message"}}, r); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("unterminated carbon: %v; want io.ErrUnexpectedEOF", err)
	}
}

// scripted is a token reader with odd but legal behaviour.
type scripted struct{ steps []step }

type step struct {
	tok xml.Token
	err error
}

func (s *scripted) Token() (xml.Token, error) {
	if len(s.steps) == 0 {
		return nil, io.EOF
	}
	st := s.steps[0]
	s.steps = s.steps[1:]
	return st.tok, st.err
}

func TestParseMessageOddReaders(t *testing.T) {
	msg := xml.StartElement{Name: xml.Name{Local: "message"}}
	rcpt := xml.StartElement{Name: xml.Name{Space: stanza.NSReceipts, Local: "received"}, Attr: []xml.Attr{{Name: xml.Name{Local: "id"}, Value: "m1"}}}
	body := xml.StartElement{Name: xml.Name{Local: "body"}}

	// A token delivered together with io.EOF is still used.
	r := &scripted{steps: []step{{rcpt, nil}, {rcpt.End(), io.EOF}}}
	ev, err := stanza.ParseMessage(msg, r)
	if err != nil || ev.Receipt != "m1" {
		t.Errorf("token with io.EOF: %v, %q", err, ev.Receipt)
	}
	// Text split over several tokens, with (nil, nil) in between.
	r = &scripted{steps: []step{{body, nil}, {xml.CharData("he"), nil}, {nil, nil}, {xml.CharData("llo"), nil}, {body.End(), nil}, {msg.End(), nil}}}
	if ev, err = stanza.ParseMessage(msg, r); err != nil || ev.Body != "hello" {
		t.Errorf("split text: %v, %q", err, ev.Body)
	}
	// A reader that makes no progress is given up on.
	steps := make([]step, 1000)
	if _, err = stanza.ParseMessage(msg, &scripted{steps: steps}); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("no progress: %v", err)
	}
	// Read errors are returned as they are.
	boom := errors.New("boom")
	if _, err = stanza.ParseMessage(msg, &scripted{steps: []step{{body, nil}, {nil, boom}}}); err != boom {
		t.Errorf("read error: %v", err)
	}
	// Unbalanced tokens do not confuse the parser.
	r = &scripted{steps: []step{{xml.EndElement{Name: xml.Name{Local: "x"}}, nil}}}
	if _, err = stanza.ParseMessage(msg, r); err != nil {
		t.Errorf("stray end: %v", err)
	}
}

// TestSplitBodyLinear: a body that arrives as 1,360 text nodes is
// gathered whole (up to MaxBodyLen) with a few allocations, not one copy
// of the growing text per node (which cost 2,531 allocations and 44 MB).
func TestSplitBodyLinear(t *testing.T) {
	d := xml.NewDecoder(strings.NewReader(splitBody))
	var toks []xml.Token
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		toks = append(toks, xml.CopyToken(tok))
	}
	start := toks[0].(xml.StartElement)
	r := &replay{toks: toks[1:]}
	var body string
	allocs := testing.AllocsPerRun(10, func() {
		r.i = 0
		m, err := stanza.ParseMessage(start, r)
		if err != nil {
			t.Fatal(err)
		}
		body = m.Body
	})
	if want := strings.Repeat("x", stanza.MaxBodyLen); body != want {
		t.Errorf("body of %d bytes, want %d x", len(body), len(want))
	}
	if allocs > 100 {
		t.Errorf("%v allocations per parse, want a few dozen", allocs)
	}
}

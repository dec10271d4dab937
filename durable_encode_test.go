package xmpptrack

import (
	"bytes"
	"encoding/xml"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
)

// sameStored checks that the stanza stored for a message without payload
// (Send's byte path) is the one the encoder writes for its tokens.
func sameStored(t *testing.T, id string, m Message) {
	t.Helper()
	want, err := encodeTokens(id, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := encodeMessage(id, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("message %+v id %q:\n got %s\nwant %s", m, id, got, want)
	}
}

// TestEncodeMessage checks the stored stanza of messages without payload,
// with text and addresses that need escaping, invalid UTF-8 and every
// optional part, against the encoder's.
func TestEncodeMessage(t *testing.T) {
	to := jid.MustParse("bob@example.org")
	odd := jid.MustParse("bob@example.org/r&'<>\"\u00e9")
	for _, m := range []Message{
		{To: to, Body: "hello", Type: xstanza.ChatMessage},
		{To: to, Body: "", Type: xstanza.ChatMessage},
		{To: odd, Body: "a & b < c > d \" e ' f\tg\nh\ri", Type: xstanza.NormalMessage, Thread: "t&<1\n"},
		{To: to, Body: "bad \xff\xfe utf-8, \x00 nul, \x1f, \uFFFE, \uFFFD, 😀", Type: xstanza.ChatMessage},
		{To: to, Body: "room", Type: xstanza.GroupChatMessage},
		{To: to, Body: "none", Type: xstanza.ChatMessage, NoReceipt: true, NoMarkable: true},
		{Body: "no address", Type: xstanza.ChatMessage},
	} {
		sameStored(t, "id&\"1", m)
		sameStored(t, "AAAAAAAAAAAAAAAA", m)
	}
}

// TestEncodeMessageBytePath: a message without payload is stored from
// Send's bytes (messageBytes, one allocation), not through the encoder.
func TestEncodeMessageBytePath(t *testing.T) {
	m := Message{To: jid.MustParse("bob@example.org"), Body: "hello", Type: xstanza.ChatMessage}
	const id = "AAAAAAAAAAAAAAAA"
	got, err := encodeMessage(id, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := messageBytes(id, m, false); !bytes.Equal(got, want) {
		t.Fatalf("stored %s, want Send's bytes without the namespace %s", got, want)
	}
	n := testing.AllocsPerRun(50, func() {
		if _, err := encodeMessage(id, m, nil); err != nil {
			t.Fatal(err)
		}
	})
	if n > 1 {
		t.Fatalf("encodeMessage: %v allocations, want 1 (the byte path)", n)
	}
}

// TestEncodeMessagePayload: a message whose Payload is set is stored with
// it, also when no buffered copy of it is passed.
func TestEncodeMessagePayload(t *testing.T) {
	m := Message{To: jid.MustParse("bob@example.org"), Body: "hello", Type: xstanza.ChatMessage,
		Payload: xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: "urn:example", Local: "extra"}})}
	got, err := encodeMessage("id1", m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, []byte(`<extra xmlns="urn:example"></extra>`)) {
		t.Fatalf("stored %s, want the payload in it", got)
	}
}

// FuzzEncodeMessage compares the stored stanza with the encoder's on any
// text, address, type and options.
func FuzzEncodeMessage(f *testing.F) {
	fuzzMessages(f, sameStored)
}

// BenchmarkEncodeMessage: the stored stanza of a typical message, from
// Send's bytes and from the encoder.
func BenchmarkEncodeMessage(b *testing.B) {
	m := Message{To: jid.MustParse("responder@localhost"), Body: "bench xxxxxxxxxxxxxxxxxxxxxxxxxx 1234", Type: xstanza.ChatMessage}
	const id = "AAAAAAAAAAAAAAAA"
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeMessage(id, m, nil)
		}
	})
	b.Run("tokens", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			encodeTokens(id, m, nil)
		}
	})
}

package xmpptrack

import (
	"bytes"
	"encoding/xml"
	"testing"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
)

// clientNS puts the first start element (and its end) in jabber:client, as
// mellium's session encoder does with a stanza that has no namespace.
type clientNS struct {
	w     xmlstream.TokenWriter
	depth int
}

func (c *clientNS) EncodeToken(t xml.Token) error {
	switch tok := t.(type) {
	case xml.StartElement:
		c.depth++
		if c.depth == 1 && tok.Name.Space == "" {
			tok.Name.Space = "jabber:client"
			t = tok
		}
	case xml.EndElement:
		if c.depth == 1 && tok.Name.Space == "" {
			tok.Name.Space = "jabber:client"
			t = tok
		}
		c.depth--
	}
	return c.w.EncodeToken(t)
}

// encodeTokens encodes messageXML's tokens as the session does.
func encodeTokens(t testing.TB, id string, m Message) []byte {
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	if _, err := xmlstream.Copy(&clientNS{w: enc}, messageXML(id, m)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAppendMessage checks that the bytes Send writes for a message without
// payload are those the session's encoder writes for its tokens, for text
// and addresses that need escaping, invalid UTF-8, characters XML does not
// allow, and every optional part.
func TestAppendMessage(t *testing.T) {
	to := jid.MustParse("bob@example.org")
	odd := jid.MustParse("bob@example.org/r&'<>\"\u00e9")
	for _, m := range []Message{
		{To: to, Body: "hello", Type: xstanza.ChatMessage},
		{To: to, Body: "", Type: xstanza.ChatMessage},
		{To: odd, Body: "a & b < c > d \" e ' f\tg\nh\ri", Type: xstanza.NormalMessage, Thread: "t&<1\n"},
		{To: to, Body: "bad \xff\xfe utf-8, \x00 nul, \x1f, \uFFFE, \uFFFD, 😀", Type: xstanza.ChatMessage},
		{To: to, Body: "room", Type: xstanza.GroupChatMessage},
		{To: to, Body: "none", Type: xstanza.ChatMessage, NoReceipt: true, NoMarkable: true},
		{To: to, Body: "x", Type: xstanza.HeadlineMessage, NoMarkable: true},
		{Body: "no to", Type: xstanza.ChatMessage},
	} {
		for _, id := range []string{"AAAAAAAAAAAAAAAA", `a&b'c"d<e>` + "\n\xff"} {
			got := appendMessage(nil, id, m)
			if want := encodeTokens(t, id, m); !bytes.Equal(got, want) {
				t.Errorf("message %+v id %q:\n got %s\nwant %s", m, id, got, want)
			}
		}
	}
}

// FuzzAppendMessage compares appendMessage with the encoder on any text.
func FuzzAppendMessage(f *testing.F) {
	f.Add("hello", "thread", "id1", "res", false)
	f.Add("a&b<\n\r\t\xff", "", `"'`, "r&'", true)
	f.Fuzz(func(t *testing.T, body, thread, id, res string, groupchat bool) {
		to, err := jid.New("bob", "example.org", res)
		if err != nil || id == "" {
			return
		}
		m := Message{To: to, Body: body, Thread: thread, Type: xstanza.ChatMessage}
		if groupchat {
			m.Type = xstanza.GroupChatMessage
		}
		if got, want := appendMessage(nil, id, m), encodeTokens(t, id, m); !bytes.Equal(got, want) {
			t.Errorf("\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkMessageStanza compares building and encoding a typical message
// through its tokens (messageXML) with appending its bytes (appendMessage).
func BenchmarkMessageStanza(b *testing.B) {
	m := Message{To: jid.MustParse("responder@localhost"), Body: "bench xxxxxxxxxxxxxxxxxxxxxxxxxx 1234", Type: xstanza.ChatMessage}
	const id = "AAAAAAAAAAAAAAAA"
	b.Run("tokens", func(b *testing.B) {
		var buf bytes.Buffer
		enc := xml.NewEncoder(&buf)
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if _, err := xmlstream.Copy(&clientNS{w: enc}, messageXML(id, m)); err != nil {
				b.Fatal(err)
			}
			enc.Flush()
		}
	})
	b.Run("bytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			messageStanza(id, m)
		}
	})
}

package xmpptrack

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// sinkConn is a net.Conn that keeps what is written and reads nothing.
type sinkConn struct{ bytes.Buffer }

func (*sinkConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (*sinkConn) Close() error                     { return nil }
func (*sinkConn) LocalAddr() net.Addr              { return nil }
func (*sinkConn) RemoteAddr() net.Addr             { return nil }
func (*sinkConn) SetDeadline(time.Time) error      { return nil }
func (*sinkConn) SetReadDeadline(time.Time) error  { return nil }
func (*sinkConn) SetWriteDeadline(time.Time) error { return nil }

// clientSession returns a mellium session on a client stream (jabber:client
// both ways, as after a real negotiation) that writes into its sinkConn.
func clientSession(t testing.TB) (*xmpp.Session, *sinkConn) {
	conn := &sinkConn{}
	ready := func(_ context.Context, in, out *stream.Info, _ *xmpp.Session, _ any) (xmpp.SessionState, io.ReadWriter, any, error) {
		in.XMLNS, out.XMLNS = "jabber:client", "jabber:client"
		return xmpp.Ready, nil, nil, nil
	}
	s, err := xmpp.NewSession(context.Background(), jid.MustParse("example.org"), jid.MustParse("alice@example.org"), conn, 0, ready)
	if err != nil {
		t.Fatal(err)
	}
	return s, conn
}

// written returns the bytes wire.Write puts on the session for r.
func written(t testing.TB, s *xmpp.Session, conn *sinkConn, r xml.TokenReader) []byte {
	conn.Reset()
	if _, err := wire.Write(context.Background(), s, r); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(conn.Bytes())
}

// sendRaws is the buffer pool of sameAsEncoder's checks, shared by them
// so that each writes into a buffer an earlier message left.
var sendRaws rawPool

// sameAsEncoder checks that Send's bytes for m are what the session's
// encoder writes for messageXML's tokens, and one well-formed element.
func sameAsEncoder(t *testing.T, id string, m Message) {
	t.Helper()
	s, conn := clientSession(t)
	want := written(t, s, conn, messageXML(id, m))
	// Send's path: a buffer of the pool, which earlier checks filled with
	// other messages, and the conversation key as the address.
	r := sendRaws.get(id, registry.Conv(m.To), m)
	got := written(t, s, conn, r)
	sendRaws.put(r)
	if !bytes.Equal(got, want) {
		t.Fatalf("message %+v id %q:\n got %s\nwant %s", m, id, got, want)
	}
	d := xml.NewDecoder(bytes.NewReader(got))
	if err := d.Decode(new(struct{})); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if _, err := d.Token(); err != io.EOF {
		t.Fatalf("%s: more than one element (%v)", got, err)
	}
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
		{To: to, Body: "type", Type: xstanza.MessageType("x&\"<\n\t")},
		{To: to, Body: strings.Repeat("long ]]> body ", 20000), Type: xstanza.ChatMessage},
	} {
		for _, id := range []string{"AAAAAAAAAAAAAAAA", `a&b'c"d<e>` + "\n\xff"} {
			sameAsEncoder(t, id, m)
		}
	}
}

// FuzzAppendMessage compares Send's bytes with the session's encoder on
// any text, address, type and options.
func FuzzAppendMessage(f *testing.F) {
	fuzzMessages(f, sameAsEncoder)
}

// fuzzMessages runs check on messages of any text, address, type and
// options, with a non-empty id.
func fuzzMessages(f *testing.F, check func(t *testing.T, id string, m Message)) {
	f.Add("hello", "thread", "id1", "bob", "example.org", "res", "chat", false, false)
	f.Add("a&b<\n\r\t\xff]]>", "", `"'`, "", "example.org", "r&'", "groupchat", true, true)
	f.Fuzz(func(t *testing.T, body, thread, id, local, domain, res, typ string, noReceipt, noMarkable bool) {
		if id == "" {
			return
		}
		m := Message{Body: body, Thread: thread, Type: xstanza.MessageType(typ), NoReceipt: noReceipt, NoMarkable: noMarkable}
		if to, err := jid.New(local, domain, res); err == nil {
			m.To = to
		}
		check(t, id, m)
	})
}

// BenchmarkMessageStanza compares writing a typical message through a
// session from its tokens (messageXML), as the bytes Send appended into a
// buffer of their own (as Send did before 4fa7df8) and as Send writes them now, into a
// buffer of its pool with the address its conversation key holds.
func BenchmarkMessageStanza(b *testing.B) {
	m := Message{To: jid.MustParse("responder@localhost"), Body: "bench xxxxxxxxxxxxxxxxxxxxxxxxxx 1234", Type: xstanza.ChatMessage}
	const id = "AAAAAAAAAAAAAAAA"
	b.Run("tokens", func(b *testing.B) {
		s, conn := clientSession(b)
		b.ReportAllocs()
		for b.Loop() {
			conn.Reset()
			if _, err := wire.Write(context.Background(), s, messageXML(id, m)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("bytes", func(b *testing.B) {
		s, conn := clientSession(b)
		b.ReportAllocs()
		for b.Loop() {
			conn.Reset()
			if _, err := wire.Write(context.Background(), s, &wire.Raw{B: messageBytes(id, m, true)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pooled", func(b *testing.B) {
		s, conn := clientSession(b)
		var rp rawPool
		var convs registry.ConvCache
		b.ReportAllocs()
		for b.Loop() {
			conn.Reset()
			r := rp.get(id, convs.Conv(m.To), m)
			if _, err := wire.Write(context.Background(), s, r); err != nil {
				b.Fatal(err)
			}
			rp.put(r)
		}
	})
}

// TestEmptyIDUsesEncoder: an empty id is left to the encoder (a random id),
// never written as a stanza without one.
func TestEmptyIDUsesEncoder(t *testing.T) {
	m := Message{To: jid.MustParse("bob@example.org"), Body: "b", Type: xstanza.ChatMessage}
	if rawMessage("", m) {
		t.Fatal("an empty id took the byte path")
	}
	s, conn := clientSession(t)
	if got := written(t, s, conn, messageXML("", m)); !bytes.Contains(got, []byte(` id="`)) {
		t.Errorf("wrote %s, want a stanza with an id", got)
	}
}

// TestSendAddress: the to attribute Send writes is the recipient's whole
// address as mellium formats it, resource included, for bare and full JIDs
// and a resource that needs escaping, one after the other so that the
// pool's buffers and the conversation keys' cache are reused.
func TestSendAddress(t *testing.T) {
	c, pc := newPeer(t, Config{})
	for _, to := range []string{"bob@example.org", "bob@example.org/r&'<>\"\u00e9", "ops@conference.example.org/dave", "bob@example.org"} {
		m := Message{To: jid.MustParse(to), Body: "b"}
		if _, err := c.Send(waitCtx(t), m); err != nil {
			t.Fatalf("Send to %s: %v", to, err)
		}
		e := pc.nextMessage(t)
		if got := e.attr("to"); got != m.To.String() {
			t.Errorf("sent to %q: the stanza's to is %q", m.To.String(), got)
		}
	}
}

// TestSendRefusesNonXMLText: an id or thread that is not valid UTF-8 or
// holds characters XML does not allow is refused before anything is
// tracked (it would go out changed, and no receipt, marker or error could
// match it).
func TestSendRefusesNonXMLText(t *testing.T) {
	c := newTapClient(t, Config{})
	to := jid.MustParse("bob@example.org")
	// Refused before anything waits: a done context shows that.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, m := range []Message{
		{To: to, ID: "a\x00b"},
		{To: to, ID: "x\xff"},
		{To: to, ID: "nc\uFFFE"},
		{To: to, ID: "nc\uFFFF"},
		{To: to, ID: "ctl\x1f"},
		{To: to, ID: "lone \xed\xa0\x80"}, // a surrogate's UTF-8 bytes
		{To: to, ID: "ok", Thread: "t\x01"},
		{To: to, ID: "ok2", Thread: "\xc3"},
	} {
		tr, err := c.Send(ctx, m)
		if tr != nil || !errors.Is(err, stanza.ErrInvalidAttr) {
			t.Errorf("Send(id %q, thread %q) = %v, %v; want no tracker and ErrInvalidAttr", m.ID, m.Thread, tr, err)
		}
	}
	if n := c.reg.Pending(); n != 0 {
		t.Errorf("%d trackers pending after refused sends", n)
	}
}

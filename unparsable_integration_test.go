package xmpptrack

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
)

// rawLogin logs local in to srv over plaintext with PLAIN and binds
// resource, bypassing every JID check of ours and mellium's. It returns the
// connection and a decoder positioned after the bind result.
func rawLogin(t *testing.T, srv *testserver.Server, local, resource string) (net.Conn, *xml.Decoder) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(testWait))
	open := func() *xml.Decoder {
		fmt.Fprintf(conn, `<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`, srv.Domain())
		d := xml.NewDecoder(conn)
		for {
			tok, err := d.Token()
			if err != nil {
				t.Fatalf("raw login: %v", err)
			}
			if s, ok := tok.(xml.StartElement); ok && s.Name.Local == "features" {
				if err := d.Skip(); err != nil {
					t.Fatal(err)
				}
				return d
			}
		}
	}
	d := open()
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + local + "\x00" + srv.Password(local)))
	fmt.Fprintf(conn, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>%s</auth>`, creds)
	if e := rawNext(t, d); e.XMLName.Local != "success" {
		t.Fatalf("raw login: %s", e.String())
	}
	d = open()
	var res strings.Builder
	xml.EscapeText(&res, []byte(resource))
	fmt.Fprintf(conn, `<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>%s</resource></bind></iq>`, res.String())
	if e := rawNext(t, d); e.attr("type") != "result" {
		t.Fatalf("raw bind: %s", e.String())
	}
	return conn, d
}

// rawNext reads the next top-level element.
func rawNext(t *testing.T, d *xml.Decoder) element {
	t.Helper()
	e, err := readElement(d)
	if err != nil && err != io.EOF {
		t.Fatalf("raw read: %v", err)
	}
	return e
}

// TestIntegrationUnparsableSender: on a real Prosody, a peer whose resource
// starts with U+1100 (Prosody accepts it, mellium's jid.Parse does not)
// sends us an IQ and a message. The session survives without reconnecting,
// the IQ gets an error, and the next message from a normal peer arrives.
func TestIntegrationUnparsableSender(t *testing.T) {
	srv := testserver.Start(t, testserver.Prosody, testserver.Options{Accounts: []string{"alice", "bob", "carol"}})
	got := make(chan *Incoming, 4)
	alice := dialTest(t, srv, "alice", Config{OnMessage: func(_ *Client, m *Incoming) { got <- m }})
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	defer cancel()
	s, err := alice.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	full := s.LocalAddr().String()

	conn, d := rawLogin(t, srv, "carol", "\u1100attacker")
	fmt.Fprintf(conn, `<iq type='get' to='%s' id='a1'><ping xmlns='urn:xmpp:ping'/></iq>`, full)
	fmt.Fprintf(conn, `<message to='%s' type='chat' id='a2'><body>boom</body><request xmlns='urn:xmpp:receipts'/></message>`, srv.JID("alice"))
	var answer element
	for answer.XMLName.Local != "iq" {
		answer = rawNext(t, d)
	}
	if answer.attr("type") != "error" || answer.attr("id") != "a1" {
		t.Errorf("answer to the IQ: %s", answer.String())
	}

	bob := dialTest(t, srv, "bob", Config{})
	if _, err := bob.Send(ctx, Message{To: srv.JID("alice"), Body: "probe", ID: "probe"}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, got); m.ID != "probe" {
		t.Errorf("alice got %+v first", *m)
	}
	if st := alice.Stats(); st.Reconnections != 0 || st.Dropped != 2 || !st.Connected {
		t.Errorf("alice: %+v, want no reconnection and 2 stanzas dropped\n%s", st, srv.Logs())
	}
}

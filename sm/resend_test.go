package sm

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmlstream"
)

// canonical renders the XML of an element as a list of tokens with
// resolved names, attributes sorted out of namespace declarations.
func canonical(t *testing.T, raw []byte) string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(raw))
	var b strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatalf("%v in %s", err, raw)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			fmt.Fprintf(&b, "<{%s}%s", tok.Name.Space, tok.Name.Local)
			for _, a := range tok.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				fmt.Fprintf(&b, " {%s}%s=%q", a.Name.Space, a.Name.Local, a.Value)
			}
			b.WriteString(">")
		case xml.EndElement:
			fmt.Fprintf(&b, "</{%s}%s>", tok.Name.Space, tok.Name.Local)
		case xml.CharData:
			fmt.Fprintf(&b, "%q", tok)
		}
	}
}

// TestRetransmissionKeepsXML: what Start retransmits (through mellium's
// encoder) is the same XML as what was first written, and a re-sent
// message only gains the delay element.
func TestRetransmissionKeepsXML(t *testing.T) {
	stanzas := []string{
		`<message xmlns="jabber:client" to="a@b/c" id="x&amp;&#39;y" type="chat" xml:lang="en"><body xmlns="jabber:client">a &lt; b &amp; &#34;c&#34;</body><x xmlns="urn:x" xmlns:p="urn:p" p:attr="v"><p:child/></x></message>`,
		`<iq type='get' id='q' xmlns='jabber:client'><query xmlns='jabber:iq:roster'/></iq>`,
		`<presence xmlns="jabber:client" id="p"><![CDATA[<text>]]><!-- c --><show>away</show></presence>`,
	}
	for _, raw := range stanzas {
		t.Run(raw[:12], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				// Unacknowledged, so that the copy stays queued: a stanza on
				// an idle link gets its <r/> at once, and the answer could
				// release it before it is looked at.
				holdAcks(srv)
				st := New(Config{})
				c := mustDial(t, srv, st, nil)
				synctest.Wait()
				for i, r := range []xml.TokenReader{rawReader([]byte(raw)), withDelay([]byte(raw), 0)} {
					st.mu.Lock()
					before := st.outH
					st.mu.Unlock()
					if err := c.sess.Send(context.Background(), r); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
					st.mu.Lock()
					if st.outH != before+1 {
						t.Fatal("not captured")
					}
					var got []byte
					for i := range st.queue.len() {
						e := st.queue.buf[(st.queue.head+i)%len(st.queue.buf)]
						if e.seq == st.outH {
							got = e.raw
						}
					}
					st.mu.Unlock()
					want := canonical(t, []byte(raw))
					if i == 1 { // the delay element comes first
						head, rest, _ := strings.Cut(want, ">")
						want = head + `><{urn:xmpp:delay}delay {}stamp="1970-01-01T00:00:00.000Z"></{urn:xmpp:delay}delay>` + rest
					}
					if g := canonical(t, got); g != want {
						t.Errorf("wrote %s\ngot  %s\nwant %s", got, g, want)
					}
				}
				c.close()
			})
		})
	}
}

func TestWithDelayKeepsExistingDelay(t *testing.T) {
	raw := []byte(`<message xmlns="jabber:client" id="m"><delay xmlns="urn:xmpp:delay" stamp="2001-01-01T00:00:00Z"/></message>`)
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	if _, err := xmlstream.Copy(e, withDelay(raw, time.Now().UnixNano())); err != nil {
		t.Fatal(err)
	}
	e.Flush()
	if strings.Count(b.String(), "<delay") != 1 {
		t.Fatalf("%s", b.String())
	}
}

package stanza_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/stanza"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
)

// evView is Evidence with JIDs as strings, comparable with reflect.DeepEqual
// and readable in failure messages.
type evView struct {
	From, To, ID     string
	Type             xstanza.MessageType
	Receipt          string
	Marker           stanza.Marker
	Thread           string
	OriginID         string
	StanzaIDs        []stanza.StanzaID
	OccupantID       string
	Body             string
	HasDelay         bool
	Error            *errView
	Carbon           stanza.CarbonKind
	Forwarded        *evView
	ReceiptRequested bool
	Markable         bool
	MUCUser          bool
}

type errView struct {
	Type      xstanza.ErrorType
	By        string
	Condition xstanza.Condition
	Text      map[string]string
}

func jidString(j jid.JID) string {
	if j.Equal(jid.JID{}) {
		return ""
	}
	return j.String()
}

func view(ev *stanza.Evidence) *evView {
	if ev == nil {
		return nil
	}
	v := &evView{
		From: jidString(ev.From), To: jidString(ev.To), ID: ev.ID, Type: ev.Type,
		Receipt: ev.Receipt, Marker: ev.Marker, Thread: ev.Thread, OriginID: ev.OriginID,
		StanzaIDs: ev.StanzaIDs, OccupantID: ev.OccupantID, Body: ev.Body, HasDelay: ev.HasDelay,
		Carbon: ev.Carbon, Forwarded: view(ev.Forwarded),
		ReceiptRequested: ev.ReceiptRequested, Markable: ev.Markable, MUCUser: ev.MUCUser,
	}
	if ev.Error != nil {
		v.Error = &errView{Type: ev.Error.Type, By: jidString(ev.Error.By), Condition: ev.Error.Condition, Text: ev.Error.Text}
	}
	return v
}

func (v *evView) String() string {
	if v == nil {
		return "<nil>"
	}
	c := *v
	c.Error, c.Forwarded = nil, nil
	s := fmt.Sprintf("%+v", c)
	if v.Error != nil {
		s += fmt.Sprintf(" Error=%+v", *v.Error)
	}
	if v.Forwarded != nil {
		s += " Forwarded=(" + v.Forwarded.String() + ")"
	}
	return s
}

// parse runs ParseMessage on the first element of s, either on a decoder
// that still yields the end element or on xmlstream.Inner, which ends with
// io.EOF (and consumes the end element itself). It fails unless the decoder
// ends up right after the message.
func parse(t testing.TB, s string, inner bool) (stanza.Evidence, error) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	start, ok := firstStart(d)
	if !ok {
		t.Fatalf("no start element in %q", s)
	}
	var r xml.TokenReader = d
	if inner {
		r = xmlstream.Inner(d)
	}
	ev, err := stanza.ParseMessage(start, r)
	if err == nil || !isReadError(err) {
		if tok, err := d.Token(); err != io.EOF {
			t.Fatalf("after ParseMessage: %#v, %v; want io.EOF", tok, err)
		}
	}
	return ev, err
}

func isReadError(err error) bool {
	_, ok := err.(*stanza.FieldError)
	return !ok
}

func firstStart(d xml.TokenReader) (xml.StartElement, bool) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, false
		}
		if s, ok := tok.(xml.StartElement); ok {
			return s, true
		}
	}
}

// encodeEvidence builds a <message/> that ParseMessage turns into ev again.
func encodeEvidence(ev *stanza.Evidence, space string) string {
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	writeEvidence(e, ev, space)
	if err := e.Flush(); err != nil {
		panic(err)
	}
	return b.String()
}

func el(space, local string, attrs ...string) xml.StartElement {
	s := xml.StartElement{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			s.Attr = append(s.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	return s
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func writeLeaf(e *xml.Encoder, s xml.StartElement, text string) {
	must(e.EncodeToken(s))
	if text != "" {
		must(e.EncodeToken(xml.CharData(text)))
	}
	must(e.EncodeToken(s.End()))
}

func writeEvidence(e *xml.Encoder, ev *stanza.Evidence, space string) {
	start := el(space, "message", "from", jidString(ev.From), "to", jidString(ev.To), "id", ev.ID, "type", string(ev.Type))
	must(e.EncodeToken(start))
	if ev.Body != "" {
		writeLeaf(e, el(space, "body"), ev.Body)
	}
	if ev.Thread != "" {
		writeLeaf(e, el(space, "thread"), ev.Thread)
	}
	if ev.Receipt != "" {
		writeLeaf(e, el(stanza.NSReceipts, "received", "id", ev.Receipt), "")
	}
	if ev.ReceiptRequested {
		writeLeaf(e, el(stanza.NSReceipts, "request"), "")
	}
	if ev.Markable {
		writeLeaf(e, el(stanza.NSMarkers, "markable"), "")
	}
	if ev.MUCUser {
		writeLeaf(e, el(stanza.NSMUCUser, "x"), "")
	}
	if ev.Marker.Type != 0 {
		_, err := ev.Marker.WriteXML(e)
		must(err)
	}
	if ev.OriginID != "" {
		_, err := stanza.OriginID{ID: ev.OriginID}.WriteXML(e)
		must(err)
	}
	for _, sid := range ev.StanzaIDs {
		_, err := sid.WriteXML(e)
		must(err)
	}
	if ev.OccupantID != "" {
		writeLeaf(e, el(stanza.NSOccupantID, "occupant-id", "id", ev.OccupantID), "")
	}
	if ev.HasDelay {
		writeLeaf(e, el(stanza.NSDelay, "delay", "stamp", "2002-09-10T23:08:25Z"), "")
	}
	if ev.Error != nil {
		se := *ev.Error
		errStart := el(space, "error", "type", string(se.Type), "by", jidString(se.By))
		must(e.EncodeToken(errStart))
		writeLeaf(e, el("urn:ietf:params:xml:ns:xmpp-stanzas", string(se.Condition)), "")
		langs := make([]string, 0, len(se.Text))
		for l := range se.Text {
			langs = append(langs, l)
		}
		sort.Strings(langs)
		for _, l := range langs {
			ts := el("urn:ietf:params:xml:ns:xmpp-stanzas", "text")
			if l != "" {
				ts.Attr = []xml.Attr{{Name: xml.Name{Space: "http://www.w3.org/XML/1998/namespace", Local: "lang"}, Value: l}}
			}
			writeLeaf(e, ts, se.Text[l])
		}
		must(e.EncodeToken(errStart.End()))
	}
	if ev.Carbon != stanza.CarbonNone {
		c := el(stanza.NSCarbons, ev.Carbon.String())
		f := el(stanza.NSForward, "forwarded")
		must(e.EncodeToken(c))
		must(e.EncodeToken(f))
		if ev.Forwarded != nil {
			writeEvidence(e, ev.Forwarded, "jabber:client")
		}
		must(e.EncodeToken(f.End()))
		must(e.EncodeToken(c.End()))
	}
	must(e.EncodeToken(start.End()))
}

package xmpptrack

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/internal/wire"
)

// handOff hands a stanza to the application's Handler, which runs on the
// goroutine of the callbacks, never on the goroutine that reads the stream.
// r yields the rest of the stanza after start; w is the stream's encoder.
//
// The stanza is copied whole (Handler gets a reader of the copy, and start
// with its own attributes). What Handler writes to its encoder is collected
// and written once Handler returns, each top-level element counted in the
// queue of unacknowledged stanzas like any other, without waiting for
// room in it (see writeOut).
//
// An IQ request (get or set) is the one case where the reader waits for
// Handler: mellium answers an IQ request that its handler left unanswered
// with service-unavailable as soon as the handler returns, so the reader
// waits until the application's Handler returned (or the client closes),
// then writes Handler's output, with its answer, itself. The request thus
// gets exactly one answer: Handler's, or mellium's error if Handler wrote
// none. While it waits the reader reads nothing: an IQ handler that waits
// for the stream (SendAndWait, Send at the MaxPending bound) waits until
// the end of its context or of the client; answer first, then wait on
// another goroutine.
//
// An error returned by Handler is logged at warn level; it does not end
// the session.
func (s *tapState) handOff(r xml.TokenReader, start *xml.StartElement, w xmlstream.TokenWriter) error {
	app := s.app
	c := s.c
	if app == nil {
		if isIQRequest(start) {
			// mellium answers it on this goroutine when we return, and that
			// write may wait: nothing applied is held back meanwhile.
			c.reg.Release()
		}
		return nil
	}
	in := new(tokbuf.Buffer)
	if _, err := in.ReadFrom(r, math.MaxInt); err != nil {
		return err
	}
	st := start.Copy()
	if !isIQRequest(&st) {
		c.ev.pushStanza(func() { c.writeOut(c.runHandler(app, &st, in)) }, c.ctx.Done())
		return nil
	}
	done := make(chan *tokbuf.Buffer, 1) // never blocks the callback goroutine
	if !c.ev.pushStanza(func() { done <- c.runHandler(app, &st, in) }, c.ctx.Done()) {
		return nil
	}
	c.reg.Release() // the reader waits: nothing it applied is held back
	select {
	case out := <-done:
		out.Rewind()
		_, err := xmlstream.Copy(w, out)
		return err
	case <-c.ctx.Done():
		return nil
	}
}

func isIQRequest(start *xml.StartElement) bool {
	if start.Name.Local != "iq" {
		return false
	}
	for _, a := range start.Attr {
		if a.Name.Local == "type" {
			return a.Value == string(xstanza.GetIQ) || a.Value == string(xstanza.SetIQ)
		}
	}
	return false
}

// runHandler runs the application's Handler on a stanza and returns what
// it wrote.
func (c *Client) runHandler(app xmpp.Handler, start *xml.StartElement, in *tokbuf.Buffer) *tokbuf.Buffer {
	out := new(capture)
	rw := struct {
		xml.TokenReader
		xmlstream.Encoder
	}{in, out}
	if err := app.HandleXMPP(rw, start); err != nil {
		c.log.Warn("xmpptrack: Config.Handler returned an error", "stanza", start.Name.Local, "err", err)
	}
	return &out.buf
}

// writeOut writes the elements that a Handler wrote, on the current
// session (waiting while the client reconnects). An element that cannot be
// written is dropped and logged at debug level.
//
// It never waits for room in StreamManagement.MaxUnacked: it runs on the
// callbacks goroutine, which an IQ request makes the reader wait for, so
// waiting there for an ack that only the reader can read stalled the
// client until Close. The elements are counted in the queue like any
// stanza, so senders wait for them; the queue may exceed MaxUnacked by a
// Handler's output.
func (c *Client) writeOut(b *tokbuf.Buffer) {
	elems := splitElements(b.Tokens())
	if len(elems) == 0 {
		return
	}
	c.waitBegin()
	defer c.waitEnd()
	s, err := c.waitSession(c.ctx, nil, true)
	if err != nil {
		return
	}
	rs := make([]xml.TokenReader, len(elems))
	for i := range rs {
		rs[i] = &tokenSlice{toks: elems[i]}
	}
	if _, err := wire.Write(c.ctx, s, rs...); err != nil {
		c.log.Debug("xmpptrack: Config.Handler's output not written", "err", err)
	}
}

// splitElements splits tokens into top-level elements; tokens between
// elements (whitespace) are left out.
func splitElements(toks []xml.Token) [][]xml.Token {
	var elems [][]xml.Token
	depth, from := 0, 0
	for i, tok := range toks {
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				from = i
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				elems = append(elems, toks[from:i+1])
			}
		}
	}
	return elems
}

// tokenSlice reads tokens from a slice.
type tokenSlice struct{ toks []xml.Token }

func (t *tokenSlice) Token() (xml.Token, error) {
	if len(t.toks) == 0 {
		return nil, io.EOF
	}
	tok := t.toks[0]
	t.toks = t.toks[1:]
	return tok, nil
}

// capture is the encoder a Handler writes to: it keeps copies of the
// tokens.
type capture struct{ buf tokbuf.Buffer }

func (c *capture) EncodeToken(t xml.Token) error {
	if start, ok := t.(xml.StartElement); ok {
		t = start.Copy()
	}
	c.buf.Add(t)
	return nil
}

func (c *capture) Encode(v any) error {
	if w, ok := v.(xmlstream.WriterTo); ok {
		_, err := w.WriteXML(c)
		return err
	}
	if m, ok := v.(xmlstream.Marshaler); ok {
		_, err := xmlstream.Copy(c, m.TokenReader())
		return err
	}
	var b bytes.Buffer
	if err := xml.NewEncoder(&b).Encode(v); err != nil {
		return err
	}
	return c.copyRaw(&b)
}

func (c *capture) EncodeElement(v any, start xml.StartElement) error {
	var b bytes.Buffer
	if err := xml.NewEncoder(&b).EncodeElement(v, start); err != nil {
		return err
	}
	return c.copyRaw(&b)
}

// copyRaw copies the raw tokens of encoded XML, namespace declarations
// kept as attributes (as mellium's own encoder does).
func (c *capture) copyRaw(b *bytes.Buffer) error {
	d := xml.NewDecoder(b)
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := c.EncodeToken(tok); err != nil {
			return err
		}
	}
}

// passRest passes a stanza that was read only in part (the tokens in b,
// the rest still in t) on to next, whole.
func passRest(next xmpp.Handler, b *tokbuf.Buffer, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if next == nil {
		return nil
	}
	b.Rewind()
	return next.HandleXMPP(struct {
		xml.TokenReader
		xmlstream.Encoder
	}{xmlstream.MultiReader(b, t), t}, start)
}

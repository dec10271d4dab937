package attach

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// queryFunc sends an IQ get with payload to to and decodes the payload of
// the result into v (which may be nil). An error reply comes back as an
// *iqError.
type queryFunc func(ctx context.Context, to jid.JID, payload xml.TokenReader, v any) error

// connCtx is the context handed to mellium for one IQ. It ends only when
// the connection the IQ was written on is gone (the client reconnected or
// stopped), never because the caller gave up: mellium v0.23.0 applies the
// end of a context to the connection's write deadline, which would fail
// the writes of other goroutines on a connection that is still in use, and
// cuts its own write short, leaving half a stanza on the stream.
type connCtx struct {
	done chan struct{}
	once sync.Once
}

func (c *connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *connCtx) Done() <-chan struct{}       { return c.done }
func (c *connCtx) Value(any) any               { return nil }
func (c *connCtx) end()                        { c.once.Do(func() { close(c.done) }) }
func (c *connCtx) Err() error {
	select {
	case <-c.done:
		return errConnGone
	default:
		return nil
	}
}

var errConnGone = fmt.Errorf("attach: the connection ended before the reply: %w", stanza.ErrDisconnected)

// sessionQuery is the queryFunc of a client: it writes the IQ with mellium
// on the client's current session and waits for the reply.
//
// mellium's IQ functions take one context for both writing and waiting, so
// the IQ runs on a goroutine of its own with a connCtx, and the caller waits
// for it or for ctx. When ctx ends first the caller returns at once and the
// goroutine stays until the reply arrives (a server answers every IQ) or the
// connection is gone.
func sessionQuery(c sessions) queryFunc {
	return func(ctx context.Context, to jid.JID, payload xml.TokenReader, v any) error {
		s, err := c.Session(ctx)
		if err != nil {
			return err
		}
		mctx := &connCtx{done: make(chan struct{})}
		remove := c.Observe(xmpptrack.Observer{Connected: func(bool) { mctx.end() }})
		result := make(chan error, 1)
		go func() {
			defer remove()
			finished := make(chan struct{})
			defer close(finished)
			go func() {
				select {
				case <-c.Done():
					mctx.end()
				case <-finished:
				}
			}()
			resp, err := s.SendIQElement(mctx, payload, xstanza.IQ{To: to, Type: xstanza.GetIQ})
			if err != nil {
				if mctx.Err() != nil {
					err = errConnGone
				}
				result <- err
				return
			}
			err = decodeReply(resp, v)
			if cerr := resp.Close(); err == nil {
				err = cerr
			}
			result <- err
		}()
		select {
		case err := <-result:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sessions is what sessionQuery needs of a client; *xmpptrack.Client has it.
type sessions interface {
	Session(context.Context) (*xmpp.Session, error)
	Observe(xmpptrack.Observer) (remove func())
	Done() <-chan struct{}
}

// iqError is an error reply, with what mellium's stanza.Error drops: the
// XEP-0363 elements next to the condition.
type iqError struct {
	Stanza  xstanza.Error
	MaxSize int64     // <file-too-large><max-file-size/>, 0 if absent
	TooBig  bool      // <file-too-large/> present
	RetryAt time.Time // <retry stamp=''/>, zero if absent
}

func (e *iqError) Error() string { return e.Stanza.Error() }

// rawError is the <error/> element as decoded here.
type rawError struct {
	Type     string `xml:"type,attr"`
	By       string `xml:"by,attr"`
	Children []struct {
		XMLName xml.Name
		Lang    string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Stamp   string `xml:"stamp,attr"`
		Text    string `xml:",chardata"`
		Max     string `xml:"max-file-size"`
	} `xml:",any"`
}

const nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"

func (r *rawError) iqError() *iqError {
	e := &iqError{Stanza: xstanza.Error{Type: xstanza.ErrorType(r.Type)}}
	if by, err := jid.Parse(r.By); err == nil {
		e.Stanza.By = by
	}
	for _, c := range r.Children {
		switch {
		case c.XMLName.Space == nsStanzas && c.XMLName.Local == "text":
			if c.Text != "" {
				if e.Stanza.Text == nil {
					e.Stanza.Text = make(map[string]string)
				}
				e.Stanza.Text[c.Lang] = c.Text
			}
		case c.XMLName.Space == nsStanzas:
			if e.Stanza.Condition == "" {
				e.Stanza.Condition = xstanza.Condition(c.XMLName.Local)
			}
		case c.XMLName.Space == nsUpload && c.XMLName.Local == "file-too-large":
			e.TooBig = true
			e.MaxSize = parseSize(c.Max)
		case c.XMLName.Space == nsUpload && c.XMLName.Local == "retry":
			if t, err := time.Parse(time.RFC3339, c.Stamp); err == nil {
				e.RetryAt = t
			}
		}
	}
	return e
}

// maxReply bounds the tokens of one reply that are looked at: a disco#items
// list of a big server is a few thousand; a peer cannot make us loop for
// ever on an endless reply.
const maxReplyTokens = 1 << 16

// decodeReply reads an IQ reply: the payload of a result is decoded into v,
// an error reply becomes an *iqError.
func decodeReply(r xml.TokenReader, v any) error {
	r = &boundedReader{r: r, left: maxReplyTokens}
	tok, err := r.Token()
	if err != nil {
		return fmt.Errorf("attach: reading the reply: %w", err)
	}
	start, ok := tok.(xml.StartElement)
	if !ok || start.Name.Local != "iq" {
		return fmt.Errorf("attach: the reply is not an IQ: %v", tok)
	}
	typ := ""
	for _, a := range start.Attr {
		if a.Name.Local == "type" && a.Name.Space == "" {
			typ = a.Value
		}
	}
	d := xml.NewTokenDecoder(xmlstream.Inner(r))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if typ == "error" {
				return &iqError{Stanza: xstanza.Error{Condition: xstanza.UndefinedCondition}}
			}
			if typ != "result" {
				return fmt.Errorf("attach: the reply has type %q", typ)
			}
			return nil // an empty result
		}
		if err != nil {
			return fmt.Errorf("attach: reading the reply: %w", err)
		}
		child, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case typ == "error" && child.Name.Local == "error":
			var raw rawError
			if err := d.DecodeElement(&raw, &child); err != nil {
				return fmt.Errorf("attach: reading the error reply: %w", err)
			}
			return raw.iqError()
		case typ == "result":
			if v == nil {
				return d.Skip()
			}
			if err := d.DecodeElement(v, &child); err != nil {
				return fmt.Errorf("attach: reading the reply: %w", err)
			}
			return nil
		default:
			if err := d.Skip(); err != nil {
				return err
			}
		}
	}
}

type boundedReader struct {
	r    xml.TokenReader
	left int
}

func (b *boundedReader) Token() (xml.Token, error) {
	if b.left <= 0 {
		return nil, errors.New("attach: reply too long")
	}
	b.left--
	return b.r.Token()
}

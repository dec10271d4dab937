package attach

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// queryFunc sends an IQ get with payload to to and decodes the payload of
// the result into v (which may be nil). An error reply comes back as an
// *iqError.
type queryFunc func(ctx context.Context, to jid.JID, payload xml.TokenReader, v any) error

var errConnGone = fmt.Errorf("attach: the connection ended before the reply: %w", stanza.ErrDisconnected)

// sessionQuery is the queryFunc of a client. The IQ is written with
// internal/wire, which never hands mellium a context (mellium v0.23.0
// applies the end of a context to the connection's write deadline, failing
// other goroutines' writes, and cuts its own write short, leaving half a
// stanza on the stream): ctx ending while the IQ is being written closes the
// connection instead, and the client resumes the stream. The reply is taken
// on the reading goroutine through Observer.IQ: only from the address asked
// (or, for our own domain, from no address), with the id we chose. ctx, the
// end of the connection or of the client stop the waiting.
func sessionQuery(c sessions) queryFunc {
	return func(ctx context.Context, to jid.JID, payload xml.TokenReader, v any) error {
		s, err := c.Session(ctx)
		if err != nil {
			return err
		}
		id := xmpptrack.NewID()
		ours := s.LocalAddr()
		answers := make(chan iqReply, 1)
		gone := make(chan struct{})
		var goneOnce sync.Once
		remove := c.Observe(xmpptrack.Observer{
			IQ: func(iq xstanza.IQ, r xml.TokenReader) bool {
				if iq.ID != id || !replyFrom(iq.From, to, ours) {
					return false
				}
				rep := iqReply{typ: iq.Type}
				rep.complete, _ = rep.buf.ReadFrom(r, maxReplyTokens)
				select {
				case answers <- rep:
				default: // the same id twice
				}
				return true
			},
			Disconnected: func(error) { goneOnce.Do(func() { close(gone) }) },
		})
		defer remove()
		iq := xstanza.IQ{ID: id, To: to, Type: xstanza.GetIQ}
		if _, err := wire.Write(ctx, s, iq.Wrap(payload)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("attach: writing the request: %w: %w", stanza.ErrDisconnected, err)
		}
		select {
		case rep := <-answers:
			if !rep.complete {
				return errors.New("attach: reply too long")
			}
			return decodeReply(rep.typ, &rep.buf, v)
		case <-gone:
			return errConnGone
		case <-c.Done():
			return errConnGone
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// iqReply is an IQ reply taken off the stream: its type and children.
type iqReply struct {
	typ      xstanza.IQType
	buf      tokbuf.Buffer
	complete bool
}

// replyFrom reports whether a reply from from answers a request to to: the
// same address, or for a request to our own domain or account, no address.
func replyFrom(from, to, ours jid.JID) bool {
	if from.Equal(to) {
		return true
	}
	return from.Equal(jid.JID{}) && (to.Equal(ours.Domain()) || to.Equal(ours.Bare()))
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

// maxReplyTokens bounds the tokens of one reply that are kept: a
// disco#items list of a big server is a few thousand.
const maxReplyTokens = 1 << 16

// decodeReply reads the children of an IQ reply of type typ: the payload of
// a result is decoded into v, an error reply becomes an *iqError.
func decodeReply(typ xstanza.IQType, children xml.TokenReader, v any) error {
	d := xml.NewTokenDecoder(children)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if typ == xstanza.ErrorIQ {
				return &iqError{Stanza: xstanza.Error{Condition: xstanza.UndefinedCondition}}
			}
			if typ != xstanza.ResultIQ {
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
		case typ == xstanza.ErrorIQ && child.Name.Local == "error":
			var raw rawError
			if err := d.DecodeElement(&raw, &child); err != nil {
				return fmt.Errorf("attach: reading the error reply: %w", err)
			}
			return raw.iqError()
		case typ == xstanza.ResultIQ:
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

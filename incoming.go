package xmpptrack

import (
	"context"
	"encoding/xml"
	"io"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// nsOOB is XEP-0066 out-of-band data, which carries attachment URLs.
const nsOOB = "jabber:x:oob"

// Incoming is a message someone sent us, as handed to Config.OnMessage. It
// is a parsed copy: it stays valid after the callback returns.
//
// Only messages with content reach OnMessage: a body, a subject, or an
// attachment. Receipts, chat markers, error replies and carbons (copies of
// what our other devices sent or received) never do; nor do our own
// messages reflected by a room we joined with package muc, whether sent with
// muc.Room.Send or with Client.Send to the room (see Reply).
type Incoming struct {
	// From and To are the sender and the recipient (our full or bare JID).
	// For a group chat message, From is room@service/nick, and so it is
	// for an occupant's private message (of type chat): mark either with
	// Client.MarkConversation, which tells them apart.
	From, To jid.JID
	// ID is the message's id attribute ("" if it had none).
	ID string
	// Type is the message type; absent or unknown types are normal.
	Type xstanza.MessageType
	// Body, Subject and Thread are the texts of the first <body/>,
	// <subject/> and <thread/> children ("" if absent).
	Body, Subject, Thread string
	// OriginID is the sender's XEP-0359 origin-id, "" if none.
	OriginID string
	// StanzaID is the XEP-0359 stanza-id that the archive of our server (one
	// to one) or of the room (group chat) assigned, "" if none. It is
	// trustworthy only if that server announces urn:xmpp:sid:0 (otherwise
	// the sender could have written it).
	StanzaID string
	// Delay is the XEP-0203 delayed-delivery stamp: when the message was
	// first sent, for room history replayed on joining and for messages
	// kept offline. It is the zero time for a live message.
	Delay time.Time
	// Room is the room's bare JID for a group chat message, the zero JID
	// otherwise; Nick is the sender's nickname in the room ("" for the
	// room's own messages, such as a subject set by the service).
	Room jid.JID
	Nick string
	// Attachments are the XEP-0066 out-of-band URLs (jabber:x:oob) the
	// message carries, in document order.
	Attachments []Attachment

	markable bool       // it asked for XEP-0333 markers
	sender   senderKind // whose conversation it belongs to, when markable
	key      string     // From's string when deliver remembers it as markable, else ""
	arrival  uint64     // its number among its sender's (see recipient.arrived), 0 for none
}

// Attachment is one out-of-band URL of an incoming message (XEP-0066).
type Attachment struct {
	// URL is the address of the file; Desc its description, if any.
	URL, Desc string
}

// Reply returns a message that answers m: to the sender (to the room, for a
// group chat message), of the same type (chat for a headline, which cannot
// be answered in kind), in the same XEP-0201 thread. Send it with
// Client.Send. A reply to a group chat message of a room joined with package
// muc goes through the room: it is proven by the room's reflection, which
// never reaches OnMessage.
//
// A one-to-one reply goes to m.From as it came, usually a full JID: the
// reply is a conversation with that one device (see Message.To), so it
// reaches DELIVERED_TO_RECIPIENT and SEEN_BY_RECIPIENT only on that
// device's receipt and displayed marker; the same person reading it on
// another device moves nothing. Set To to m.From.Bare() to accept evidence
// from any of the sender's devices (the server then routes the reply by
// its own rules).
func (m *Incoming) Reply(body string) Message {
	r := Message{To: m.From, Body: body, Type: m.Type, Thread: m.Thread}
	switch m.Type {
	case xstanza.GroupChatMessage:
		r.To = m.Room
	case xstanza.HeadlineMessage, xstanza.ErrorMessage:
		r.Type = xstanza.ChatMessage
	}
	return r
}

// Reply sends body as an answer to m (see Incoming.Reply) and returns the
// tracker, as Send does.
func (c *Client) Reply(ctx context.Context, m *Incoming, body string) (*tracking.MessageTracker, error) {
	return c.Send(ctx, m.Reply(body))
}

// hasContent reports whether m is worth handing to OnMessage.
func (m *Incoming) hasContent() bool {
	return m.Body != "" || m.Subject != "" || len(m.Attachments) > 0
}

// newIncoming builds an Incoming from a parsed message and its tokens
// (the children of the message element, as read after its start element).
// Strings are copied: the tokens' bytes belong to a reused buffer.
func newIncoming(ev *stanza.Evidence, r xml.TokenReader) *Incoming {
	m := &Incoming{
		From:     ev.From,
		To:       ev.To,
		ID:       ev.ID,
		Type:     ev.Type,
		Thread:   ev.Thread,
		OriginID: ev.OriginID,
		markable: ev.Markable,
	}
	if ev.Type == xstanza.GroupChatMessage {
		m.Room, m.Nick = ev.From.Bare(), ev.From.Resourcepart()
	}
	archive := m.Room.String()
	if m.Type != xstanza.GroupChatMessage {
		archive = ev.To.Bare().String()
	}
	for _, sid := range ev.StanzaIDs {
		if by, err := jid.Parse(sid.By); err == nil && by.String() == archive {
			m.StanzaID = sid.ID
			break
		}
	}
	var body, subject, delay bool
	depth := 0
	for {
		tok, err := r.Token()
		if err != nil {
			if err != io.EOF {
				return m
			}
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth != 1 {
				continue
			}
			switch {
			case t.Name.Local == "body" && !body && isClient(t.Name.Space):
				body, m.Body = true, text(r)
				depth--
			case t.Name.Local == "subject" && !subject && isClient(t.Name.Space):
				subject, m.Subject = true, text(r)
				depth--
			case t.Name.Local == "delay" && t.Name.Space == stanza.NSDelay && !delay:
				delay = true
				for _, a := range t.Attr {
					if a.Name.Local == "stamp" {
						m.Delay, _ = time.Parse(time.RFC3339Nano, a.Value)
					}
				}
			case t.Name.Local == "x" && t.Name.Space == nsOOB:
				if a := oob(r); a.URL != "" {
					m.Attachments = append(m.Attachments, a)
				}
				depth--
			}
		case xml.EndElement:
			depth--
		}
	}
	return m
}

func isClient(space string) bool { return space == "" || space == xstanza.NSClient }

// text returns the character data of the element whose start was just
// read, consuming it through its end; text of nested elements is skipped.
func text(r xml.TokenReader) string {
	var b strings.Builder
	depth := 0
	for {
		tok, err := r.Token()
		if err != nil {
			return b.String()
		}
		switch t := tok.(type) {
		case xml.CharData:
			if depth == 0 {
				b.Write(t)
			}
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				return b.String()
			}
			depth--
		}
	}
}

// oob reads a jabber:x:oob element whose start was just read.
func oob(r xml.TokenReader) Attachment {
	var a Attachment
	for {
		tok, err := r.Token()
		if err != nil {
			return a
		}
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "url":
				a.URL = strings.TrimSpace(text(r))
			case "desc":
				a.Desc = text(r)
			default:
				text(r)
			}
		case xml.EndElement:
			return a
		}
	}
}

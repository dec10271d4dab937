package xmpptrack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Message is one message to send.
type Message struct {
	// ID is the message's id. Empty means a fresh random one (the usual
	// choice); a caller-chosen id must be unique among pending messages
	// (else Send fails with tracking.ErrDuplicateID) and at most
	// stanza.MaxIDLen bytes long (else Send fails with stanza.ErrIDTooLong).
	ID string
	// To is the recipient. A bare JID is usual; the tracker's conversation is
	// its bare JID either way.
	To jid.JID
	// Body is the text.
	Body string
	// Type is the message type; empty means chat.
	Type xstanza.MessageType
	// Thread is an optional XEP-0201 thread id.
	Thread string
	// Payload holds extra child elements, written after the body.
	Payload xml.TokenReader
	// NoReceipt leaves out the XEP-0184 receipt request (never sent on group
	// chat messages anyway).
	NoReceipt bool
	// NoMarkable leaves out the XEP-0333 markable hint.
	NoMarkable bool
	// Window overrides the client's tracking window for this message: zero
	// keeps it, a negative value means none.
	Window time.Duration
}

// Send sends a tracked message and returns its tracker. Send waits while the
// client reconnects, while the pending-tracker bound is reached and while the
// stream-management queue is full, until ctx ends; ctx bounds only that
// waiting and the write, never the tracking.
//
// The message gets a fresh unique id, used as its id attribute and XEP-0359
// origin-id and kept when it is re-sent after a reconnection. The tracker is
// registered before the message is written. If the write fails the tracker
// becomes Aborted and the error is returned with it.
func (c *Client) Send(ctx context.Context, m Message) (*tracking.MessageTracker, error) {
	return c.send(ctx, m, false)
}

// TrySend is Send without waiting for a pending-tracker slot: at the bound it
// returns an error matching tracking.ErrTooManyPending.
func (c *Client) TrySend(ctx context.Context, m Message) (*tracking.MessageTracker, error) {
	return c.send(ctx, m, true)
}

func (c *Client) send(ctx context.Context, m Message, try bool) (*tracking.MessageTracker, error) {
	if m.Type == "" {
		m.Type = xstanza.ChatMessage
	}
	if len(m.ID) > stanza.MaxIDLen {
		// Peers' receipts and markers for it would be refused as oversized.
		return nil, fmt.Errorf("xmpptrack: message id of %d bytes: %w", len(m.ID), stanza.ErrIDTooLong)
	}
	s, err := c.Session(ctx)
	if err != nil {
		return nil, err
	}
	conv := m.To.Bare().String()
	opts := tracking.TrackOptions{Window: m.Window, Thread: m.Thread}
	var t *tracking.MessageTracker
	for range 3 { // a fresh id only collides with a pending one by hash, ~2^-64
		id := m.ID
		if id == "" {
			id = NewID()
		}
		if try {
			t, err = c.reg.TryTrack(conv, id, opts)
		} else {
			t, err = c.reg.Track(ctx, conv, id, opts)
		}
		if !errors.Is(err, tracking.ErrDuplicateID) || m.ID != "" {
			break
		}
	}
	if errors.Is(err, tracking.ErrShutdown) {
		return nil, ErrClientClosed
	}
	if err != nil {
		return nil, err
	}
	if err := c.sm.Reserve(ctx); err != nil {
		c.reg.Lost(conv, t.ID())
		return t, err
	}
	if err := s.Send(ctx, messageXML(t.ID(), m)); err != nil {
		c.reg.Lost(conv, t.ID())
		return t, err
	}
	return t, nil
}

// messageXML builds the message stanza.
func messageXML(id string, m Message) xml.TokenReader {
	children := []xml.TokenReader{
		xmlstream.Wrap(xmlstream.Token(xml.CharData(m.Body)), xml.StartElement{Name: xml.Name{Local: "body"}}),
	}
	if m.Thread != "" {
		children = append(children, xmlstream.Wrap(xmlstream.Token(xml.CharData(m.Thread)), xml.StartElement{Name: xml.Name{Local: "thread"}}))
	}
	if !m.NoReceipt && m.Type != xstanza.GroupChatMessage {
		children = append(children, stanza.ReceiptRequest{}.TokenReader())
	}
	if !m.NoMarkable {
		children = append(children, stanza.Markable{}.TokenReader())
	}
	children = append(children, stanza.OriginID{ID: id}.TokenReader())
	if m.Payload != nil {
		children = append(children, m.Payload)
	}
	return xstanza.Message{To: m.To, Type: m.Type, ID: id}.Wrap(xmlstream.MultiReader(children...))
}

// NewID returns a fresh message id: 96 random bits in 16 URL-safe characters.
func NewID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

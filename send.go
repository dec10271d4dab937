package xmpptrack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/route"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/internal/xmltext"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Message is one message to send.
type Message struct {
	// ID is the message's id. Empty means a fresh one that the client
	// makes (the usual choice, and the cheapest: see tracking's doc on
	// memory); a caller-chosen id must be unique among pending messages
	// (else Send fails with tracking.ErrDuplicateID), at most
	// stanza.MaxIDLen bytes long (else Send fails with stanza.ErrIDTooLong)
	// and valid UTF-8 made of characters XML allows (else Send fails with
	// stanza.ErrInvalidAttr: it could not be sent unchanged, so nothing
	// could answer it).
	ID string
	// To is the recipient; required (a zero To fails with an error matching
	// stanza.ErrInvalidHandle before anything is written). A bare JID is
	// usual: the message is a conversation with the account, and receipts,
	// markers and errors count from any of its resources. A full JID is a
	// conversation with that one resource: the tracker's To shows the full
	// JID, and only evidence from that full JID counts (errors also from
	// the bare JID and the domain), so a receipt or marker from the
	// person's other device moves nothing.
	To jid.JID
	// Body is the text.
	Body string
	// Type is the message type; empty means chat.
	Type xstanza.MessageType
	// Thread is an optional XEP-0201 thread id, valid UTF-8 made of
	// characters XML allows (else Send fails with stanza.ErrInvalidAttr).
	Thread string
	// Payload holds extra child elements, written after the body. Send
	// reads it whole before tracking the message (so that it can write the
	// message again), and fails if it cannot be read or is not well-formed
	// XML (unbalanced elements, a comment holding "--", an invalid name):
	// the server would close the stream over it.
	Payload xml.TokenReader
	// NoReceipt leaves out the XEP-0184 receipt request (never sent on group
	// chat messages anyway).
	NoReceipt bool
	// NoMarkable leaves out the XEP-0333 markable hint.
	NoMarkable bool
	// Window overrides the client's tracking window for this message: zero
	// keeps it, a negative value means none.
	Window time.Duration
	// Channel is an application label stored with the message by
	// Config.Store (store.Message.Channel), so that a reader of the store
	// can filter by it; it is never sent. Without a store it is unused.
	Channel string
}

// Send sends a tracked message and returns its tracker.
//
// A message to the bare JID of a room joined with package muc goes through
// the room (muc.Room.SendMessage): as a group chat message without a
// receipt request, proven by the room's reflection, which the application
// does not see again. One to an occupant of such a room (room@service/nick,
// not of type groupchat) is a private message: it gets XEP-0045's muc#user
// <x/> (§7.5), unless m.Payload has one. A retry of a message Send reported
// ErrRecordUncertain for gets it exactly when the first call added it,
// whatever the room did since, while the client keeps the message in doubt
// (a few minutes, and at most 10,000 such messages: see
// ErrRecordUncertain); after that the retry is an ordinary Send, which
// decides it from the room again. A room that was not joined that way takes
// us for a stranger: it answers with an error reply (ERROR, typically
// service-unavailable or not-acceptable, matching stanza.ErrNotAvailable or
// nothing definite); join it with muc.Join first.
//
// The message gets a fresh unique id, used as its id attribute and XEP-0359
// origin-id and kept when it is re-sent after a reconnection. The tracker is
// registered before the message is written.
//
// Send waits while the client reconnects, while the pending-tracker bound is
// reached, while the stream-management queue is full, and while the send
// window (StreamManagement.Window) has no room. A write that fails
// never reached the server whole and stream management has not counted it,
// so Send closes that connection, waits for the next one and writes the
// message again, with the same id: a connection that breaks under Send costs
// no message. Send has no time limit of its own: it waits as long as ctx
// allows (with context.Background, until the client is closed), so give it a
// deadline. ctx bounds only this waiting, never the tracking.
//
// Errors follow one contract. Invalid input (no recipient in m.To, an id
// that is too long, an id or thread that is not valid UTF-8 or holds
// characters XML does not allow, a payload that is not well-formed) and failures before
// the message is tracked (the client is closed, ctx ended while waiting for
// a connection or a MaxPending slot, a duplicate id, a Config.Store that
// could not record it: ErrNotRecorded, or cannot tell whether it did:
// ErrRecordUncertain, such a message whose record turned out settled:
// ErrRecordSettled) return a nil tracker and the error: nothing was sent
// (after ErrRecordUncertain the store may hold the message, and the client
// sends it once it finds it there: retry with the same id, see there).
// Once the message is tracked, an error
// comes with its tracker in a final state: Aborted when ctx ended first
// (waiting for room in the stream-management queue or in the send window,
// or while the client reconnects), when the client is closed under it
// (Closed after Close), or
// when the write failed on three connections in a row (a message that makes
// the server drop the connection, one over its size limit say, must not
// make the client reconnect for ever). If ctx ends while the write itself
// is blocked (the server does not read), the connection is closed, since
// half a stanza cannot be taken back; the client reconnects and resumes the
// stream. Send returns a nil error once the message is written.
//
// Errors that come from the connection match stanza.ErrDisconnected: ctx
// ended while the client had no connection, or while a write failed on its
// own (the connection broke; with ctx's error), or the write failed on
// three connections. A write that ctx itself cut returns ctx's error only.
//
// With Config.Store, the message is written ahead before Send waits for a
// connection or for room in the send window: a Send whose ctx ends while
// it waits there has stored the message, and its ABORTED state is
// recorded shortly after Send returns. A process that dies in between
// finds the message pending when it restarts, and sends it.
func (c *Client) Send(ctx context.Context, m Message) (*tracking.MessageTracker, error) {
	return c.send(ctx, m, false)
}

// TrySend is Send without waiting for a pending-tracker slot: at the bound it
// returns an error matching tracking.ErrTooManyPending. It waits for a
// connection and writes as Send does.
func (c *Client) TrySend(ctx context.Context, m Message) (*tracking.MessageTracker, error) {
	return c.send(ctx, m, true)
}

// maxWrites bounds the writes of one message that fail (see Send).
const maxWrites = 3

func (c *Client) send(ctx context.Context, m Message, try bool) (*tracking.MessageTracker, error) {
	if err := checkRecipient(m.To); err != nil {
		return nil, err
	}
	if !route.IsDirect(ctx) {
		if o := c.roomOf(m.To); o != nil {
			return o.Route(ctx, m) // a room joined with package muc tracks it
		}
	}
	if m.Type == "" {
		m.Type = xstanza.ChatMessage
	}
	if len(m.ID) > stanza.MaxIDLen {
		// Peers' receipts and markers for it would be refused as oversized.
		return nil, fmt.Errorf("xmpptrack: message id of %d bytes: %w", len(m.ID), stanza.ErrIDTooLong)
	}
	// Text XML cannot carry would go out as U+FFFD, and receipts, markers
	// and errors echoing the id (markers the thread) would never match it.
	if !xmltext.Valid(m.ID) {
		return nil, fmt.Errorf("xmpptrack: message id %q: not valid UTF-8 or holds characters XML does not allow: %w", m.ID, stanza.ErrInvalidAttr)
	}
	if !xmltext.Valid(m.Thread) {
		return nil, fmt.Errorf("xmpptrack: thread %q: not valid UTF-8 or holds characters XML does not allow: %w", m.Thread, stanza.ErrInvalidAttr)
	}
	var payload *tokbuf.Buffer
	if m.Payload != nil {
		var err error
		if payload, err = readPayload(m.Payload); err != nil {
			return nil, fmt.Errorf("xmpptrack: message payload: %w", err)
		}
	}
	c.waitBegin() // a callback may wait here for what the reader reads
	defer c.waitEnd()
	// Refuse after Close and during Shutdown; track only once connected.
	if _, err := c.Session(ctx); err != nil {
		return nil, err
	}
	h := &hold{id: m.ID} // the message in doubt this Send holds, if any
	if c.dur != nil {
		defer c.dur.release(h)
	}
	if c.dur != nil && m.ID != "" {
		// A retry of a message Send reported ErrRecordUncertain for: held
		// while this Send works on it, so that it and the client's own
		// look at the store (resolveDoubts) cannot both send it.
		if err := c.dur.claim(ctx, h); err != nil {
			return nil, err
		}
	}
	if h.mucUser = c.addsMUCUser(m, h); h.mucUser {
		payload = withMUCUser(payload) // written ahead with it: sent again the same
	}
	if h.e != nil && c.dur.isResolved(h.e) {
		return c.retryResolved(ctx, h.e, m, payload)
	}
	return c.track(ctx, m, payload, try, h)
}

// track tracks the message, writes it ahead to the store, if any, and
// writes it (see Send); h holds the message in doubt with its id, if any
// (a retry), and is where a write-ahead in doubt keeps it.
func (c *Client) track(ctx context.Context, m Message, payload *tokbuf.Buffer, try bool, h *hold) (*tracking.MessageTracker, error) {
	conv := c.convs.Conv(m.To)
	opts := registry.TrackOptions{Window: m.Window, Thread: m.Thread, Room: m.Type == xstanza.GroupChatMessage}
	// Without an id, the registry makes one (see registry.Registry.Track):
	// its trackers then hold no id string and need no map entry.
	var t *tracking.MessageTracker
	var err error
	if try {
		t, err = c.reg.TryTrack(conv, m.ID, opts)
	} else {
		t, err = c.reg.Track(ctx, conv, m.ID, opts)
	}
	if errors.Is(err, registry.ErrShutdown) {
		return nil, ErrClientClosed
	}
	if err != nil {
		return nil, err
	}
	id := t.ID() // formatted on each call: once here
	room, err := c.sm.Reserve(ctx)
	if err != nil {
		c.reg.Lost(conv, id)
		return t, err
	}
	// Given back once the message is written (the queue holds it then)
	// or will not be.
	defer room.Release()
	if c.dur != nil {
		if err := c.dur.writeAhead(ctx, id, m, payload, c.deadline(m.Window), h); err != nil {
			// Nothing was sent: the tracker goes, unreported, unless its
			// window ended. The store may hold the message after
			// ErrRecordUncertain (see there).
			if ue := (*UncertainError)(nil); errors.As(err, &ue) && ue.windowEnded {
				// Its window ended: its tracker times out now, as any
				// message's does, recorded and reported.
				<-t.Done()
			} else {
				c.dur.restoring(id, tracking.Aborted, false)
				c.reg.Lost(conv, id)
			}
			c.dur.gaveUp(t)
			if h.e != nil && h.tok != nil {
				c.reportOwed(h.e) // a record whose window ended (see adopt)
			}
			return nil, err
		}
		if h.adopted != nil {
			// An earlier write-ahead landed: tracked for the rest of its
			// window, as the store has it, not for a new one.
			c.dur.restoring(id, tracking.Aborted, false)
			c.reg.Lost(conv, id)
			if t, err = c.trackAdopted(ctx, *h.adopted); err != nil {
				// The record stays pending and unsent, in doubt: the
				// client sends it (see ErrRecordUncertain).
				return nil, &UncertainError{ID: h.id, Err: err}
			}
			id = t.ID()
			c.dur.resolved(h.e)
		}
	}
	if err := c.writeMessage(ctx, id, conv, m, payload); err != nil {
		c.reg.Lost(conv, id)
		return t, err
	}
	return t, nil
}

// writeMessage writes the message, again on the next connection when a
// write fails (see Send). It keeps working during Shutdown: the message is
// tracked, and Shutdown waits for it.
//
// It takes a place in the send window (sm.State.Pace) on the connection it
// writes to, and holds it through the write only, so that senders the
// window holds back can have their write-aheads committed meanwhile. (Held
// through the write-ahead too, the window cut a group commit of 1,000
// senders from about 200 messages to about 40; taken here, the senders'
// write system calls per message fell from 3.74 to 3.20, against 2.58
// with no window, and their CPU did not change measurably: each sender's
// next write-ahead still waits for its previous turn in the window.) A
// sender whose connection
// ended while it waited for a place waits for the next connection and
// paces there, so a reconnection does not let every waiting sender through
// at once. Nothing was written if ctx ends while it waits. conv is the
// message's conversation key (registry.Conv of m.To, which is m.To's
// string), which every caller already holds.
func (c *Client) writeMessage(ctx context.Context, id, conv string, m Message, payload *tokbuf.Buffer) error {
	var stale *xmpp.Session
	var slot sm.Slot
	defer slot.Release()
	var raw *wire.Raw // the stanza's bytes, built at the first write, kept for the others
	for attempt := 1; ; {
		s, err := c.waitSession(ctx, stale, true)
		if err != nil {
			return err
		}
		if !slot.Held() {
			slot, err = c.sm.Pace(ctx)
			if errors.Is(err, sm.ErrConnEnded) {
				stale = s // no write attempt: wait for the next one
				continue
			}
			if err != nil {
				return err
			}
		}
		var r xml.TokenReader
		switch {
		case raw != nil:
			r = raw
		case payload == nil && rawMessage(id, m):
			// Built once a place in the window is held: a sender waiting
			// for a connection or a place holds no buffer.
			raw = c.raws.get(id, conv, m)
			defer c.raws.put(raw)
			r = raw
		default:
			if payload != nil {
				payload.Rewind()
				m.Payload = payload
			}
			r = messageXML(id, m)
		}
		_, err = wire.Write(ctx, s, r)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return endedWrite(ctx.Err(), err)
		case attempt == maxWrites:
			return fmt.Errorf("%w: %w", stanza.ErrDisconnected, err)
		}
		c.log.Debug("xmpptrack: write failed; writing the message again on the next connection",
			"id", id, "attempt", attempt, "err", err)
		stale = s
		attempt++
	}
}

// endedWrite is writeMessage's error when ctx ended (ctxErr) by the time
// a write failed with err: ctx cut a write the server did not take (err is
// ctx's), or ctx ended while the write failed on its own. Either way ctx
// ended first for the caller, and the error matches ctx's; in the second
// the connection failed as well, and it matches stanza.ErrDisconnected too.
func endedWrite(ctxErr, err error) error {
	if errors.Is(err, ctxErr) {
		return err
	}
	return fmt.Errorf("%w (the write failed too: %w: %w)", ctxErr, stanza.ErrDisconnected, err)
}

// readPayload reads Message.Payload into memory, so that the message can be
// written again, and checks that it encodes: an encoding error in the middle
// of a stanza would break the stream.
func readPayload(r xml.TokenReader) (*tokbuf.Buffer, error) {
	b := new(tokbuf.Buffer)
	if _, err := b.ReadFrom(r, math.MaxInt); err != nil {
		return nil, err
	}
	// Encode it inside an element and parse it back: encoding/xml encodes
	// some things that are not well-formed (a comment holding "--", an
	// invalid name), which would make the server close the stream, and
	// stream management would then write it again on every connection.
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	wrap := xml.StartElement{Name: xml.Name{Local: "payload"}}
	for _, tok := range append(append([]xml.Token{wrap}, b.Tokens()...), wrap.End()) {
		if err := enc.EncodeToken(tok); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	d := xml.NewDecoder(&buf)
	for {
		if _, err := d.RawToken(); err == io.EOF {
			return b, nil
		} else if err != nil {
			return nil, fmt.Errorf("not well-formed: %w", err)
		}
	}
}

// rawMessage reports whether Send writes the message's stanza as bytes it
// builds itself (appendMessage, rawPool) rather than through the encoder
// (messageXML): a message without payload, with an id. An empty id (Send
// never writes one) is left to the encoder, which gives the stanza a
// random id.
func rawMessage(id string, m Message) bool { return m.Payload == nil && id != "" }

// messageBytes returns appendMessage's bytes, in a buffer sized for text
// that needs no escaping (escaped text makes append grow it).
func messageBytes(id string, m Message, stream bool) []byte {
	size := 320 + len(m.Body) + len(m.Thread) + 2*len(id) + len(m.To.Localpart()) + len(m.To.Domainpart()) + len(m.To.Resourcepart())
	return appendMessage(make([]byte, 0, size), id, m.To.String(), m, stream)
}

// maxPooledRaw bounds the buffers rawPool keeps: a rare huge message does
// not stay in memory after it was written.
const maxPooledRaw = 16 << 10

// rawPool keeps the buffers of the stanzas Send builds (rawMessage), so
// that a message costs no buffer of its own: what is written is copied on
// the way (stream management keeps its own copy of every stanza it may
// have to write again, and the kernel or TLS take theirs; wire.Write keeps
// no reference to a Raw's bytes once it returns), so a buffer is free
// again once Write returned. The zero value is ready.
type rawPool struct{ p sync.Pool }

// poisonPooled makes rawPool.put overwrite a buffer's bytes before the
// buffer can be reused. Only the package's tests set it (TestMain, before
// anything runs): a layer that kept written bytes after Write returned
// would then retransmit garbage in every resumption and resend test.
var poisonPooled bool

// get returns the stanza of a message for which rawMessage holds; to is
// m.To.String().
func (rp *rawPool) get(id, to string, m Message) *wire.Raw {
	r, _ := rp.p.Get().(*wire.Raw)
	if r == nil {
		r = new(wire.Raw)
	}
	r.B = appendMessage(r.B[:0], id, to, m, true)
	return r
}

// put gives back a stanza of get once it is no longer used.
func (rp *rawPool) put(r *wire.Raw) {
	if cap(r.B) > maxPooledRaw {
		return
	}
	if poisonPooled {
		for i := range r.B {
			r.B[i] = 'X'
		}
	}
	*r = wire.Raw{B: r.B[:0]}
	rp.p.Put(r)
}

// appendMessage appends the message stanza messageXML builds for a message
// without payload and with an id, byte for byte as the session's encoder
// writes it on a client stream (in the jabber:client namespace, without
// the from mellium adds on server streams, attributes in mellium's order, empty
// elements with an end tag, text escaped as encoding/xml escapes it): a
// tenth of the cost of encoding its tokens, which was the largest part of
// Send's own work. Without stream, it leaves the namespace out, as
// encoding/xml writes the element outside a stream (the stanza the store
// keeps). to is m.To.String() (the caller may have it already: a
// conversation key is that string, registry.Conv).
func appendMessage(b []byte, id, to string, m Message, stream bool) []byte {
	b = append(b, `<message`...)
	if stream {
		b = append(b, ` xmlns="jabber:client"`...)
	}
	b = append(b, ` type="`...)
	b = wire.AppendEscaped(b, string(m.Type), true)
	if to != "" {
		b = append(b, `" to="`...)
		b = wire.AppendEscaped(b, to, true)
	}
	if id != "" {
		b = append(b, `" id="`...)
		b = wire.AppendEscaped(b, id, true)
	}
	b = append(b, `"><body>`...)
	b = wire.AppendEscaped(b, m.Body, false)
	b = append(b, `</body>`...)
	if m.Thread != "" {
		b = append(b, `<thread>`...)
		b = wire.AppendEscaped(b, m.Thread, false)
		b = append(b, `</thread>`...)
	}
	if !m.NoReceipt && m.Type != xstanza.GroupChatMessage {
		b = append(b, `<request xmlns="`+stanza.NSReceipts+`"></request>`...)
	}
	if !m.NoMarkable {
		b = append(b, `<markable xmlns="`+stanza.NSMarkers+`"></markable>`...)
	}
	b = append(b, `<origin-id xmlns="`+stanza.NSSID+`" id="`...)
	b = wire.AppendEscaped(b, id, true)
	return append(b, `"></origin-id></message>`...)
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

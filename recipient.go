package xmpptrack

import (
	"encoding/xml"
	"sync"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// Bounds of the recipient side, so that peers cannot grow our memory.
const (
	// outboxSize bounds the answers (receipts and markers) waiting to be
	// written. The writer empties the outbox into its own buffer whenever it
	// can write (so up to twice as many answers are held), and the bound is
	// reached only when answers come in faster than the connection takes
	// them, or while it is down (TestRecipientBurst logs what a burst of
	// 5,000 requests drops). An answer that does not fit is dropped and
	// logged at debug level: the reading goroutine never waits for the writer.
	outboxSize  = 4096
	maxMarkable = 10_000 // conversations whose newest markable message we remember
	// answerBatch is how many answers are written per hold of the session's
	// output (each flushed on its own, see wire.Write): a burst of answers
	// costs one acquisition of the output, not one per answer, and a
	// message the application sends meanwhile waits for one batch at most.
	answerBatch = 64
)

// recipient is the receiving half: it answers receipt requests and sends
// displayed markers on request. Answers are written by one goroutine, never by
// the Serve goroutine that observes the requests.
type recipient struct {
	c     *Client
	ready chan struct{} // holds a value when answers were queued since the writer last looked

	mu       sync.Mutex
	out      []answer          // the outbox, oldest first
	markerAt map[string]int    // peer (bare JID) -> index in out of its queued displayed marker
	markable map[string]answer // newest markable message per peer (bare JID)
}

// answer is a receipt or a marker to send.
type answer struct {
	to     jid.JID
	typ    xstanza.MessageType
	ref    string // id of the message it refers to
	thread string
	marker bool // a displayed marker instead of a receipt
}

func newRecipient(c *Client) *recipient {
	return &recipient{
		c:        c,
		ready:    make(chan struct{}, 1),
		markerAt: make(map[string]int),
		markable: make(map[string]answer),
	}
}

// received handles a content message from a peer (never an error, group
// chat, carbon, receipt or marker: the tap filters those, so there are no
// loops). It runs on the Serve goroutine and never blocks. With
// Config.OnMessage set, the message is remembered as markable only once
// OnMessage is called with it (see Client.deliver).
func (r *recipient) received(ev *stanza.Evidence) {
	if ev.ReceiptRequested && !r.c.cfg.NoReceipts {
		r.mu.Lock()
		r.queueLocked("", answer{to: ev.From, typ: ev.Type, ref: ev.ID})
		r.mu.Unlock()
	}
	if ev.Markable && r.c.cfg.OnMessage == nil {
		r.remember(ev.From, ev.Type, ev.ID, ev.Thread)
	}
}

// remember remembers the newest markable message of a peer, for
// MarkDisplayed.
func (r *recipient) remember(from jid.JID, typ xstanza.MessageType, id, thread string) {
	if r.c.cfg.NoMarkers {
		return
	}
	peer := from.Bare().String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.markable[peer]; !ok && len(r.markable) >= maxMarkable {
		// Full (peers the application never marks, or a flood of
		// senders): forget an arbitrary one rather than stop
		// remembering new peers for good.
		for k := range r.markable {
			delete(r.markable, k)
			break
		}
	}
	r.markable[peer] = answer{to: from.Bare(), typ: typ, ref: id, thread: thread, marker: true}
}

// queueLocked adds an answer to the outbox and reports whether it is there.
// A displayed marker for peer replaces one still queued for the same peer
// (markers are cumulative: the newer one covers the older): in its place
// when no receipt to that peer was queued after it (or it is a room's), else
// at the end, the older one removed. A marker never overtakes a receipt to
// its peer: a sender takes a marker as proof only for messages whose receipt
// came before it, so a marker written ahead of the receipts of the messages
// it covers would leave them short of SEEN_BY_RECIPIENT until a later
// marker, for good when it is the last. A replacement never needs room.
// When the outbox is full any other answer is dropped and logged. The
// caller holds r.mu.
func (r *recipient) queueLocked(peer string, a answer) bool {
	if a.marker {
		if i, ok := r.markerAt[peer]; ok {
			// Group chat messages ask for no receipts; those queued to
			// the room's occupants answer their private messages.
			if a.typ == xstanza.GroupChatMessage || !r.receiptAfter(i) {
				r.out[i] = a
				return true
			}
			r.removeLocked(i)
		}
	}
	if len(r.out) >= outboxSize {
		r.c.log.Debug("xmpptrack: outbox full, answer dropped", "to", a.to.String(), "ref", a.ref, "marker", a.marker)
		return false
	}
	if a.marker {
		r.markerAt[peer] = len(r.out)
	}
	r.out = append(r.out, a)
	select {
	case r.ready <- struct{}{}:
	default:
	}
	return true
}

// receiptAfter reports whether a receipt to the peer of the marker at
// out[i] is queued after it. The caller holds r.mu.
func (r *recipient) receiptAfter(i int) bool {
	to := r.out[i].to.Bare()
	for _, a := range r.out[i+1:] {
		if !a.marker && a.to.Bare().Equal(to) {
			return true
		}
	}
	return false
}

// removeLocked removes the answer out[i], a queued marker, keeping the
// order of the others. The caller holds r.mu.
func (r *recipient) removeLocked(i int) {
	copy(r.out[i:], r.out[i+1:])
	r.out[len(r.out)-1] = answer{}
	r.out = r.out[:len(r.out)-1]
	for k, j := range r.markerAt {
		switch {
		case j == i:
			delete(r.markerAt, k)
		case j > i:
			r.markerAt[k] = j - 1
		}
	}
}

// MarkDisplayed sends an XEP-0333 displayed marker for the newest markable
// message received from peer, which tells the sender that it and every
// earlier message were displayed. A marker for peer that is still waiting
// to be written is replaced by the new one. It reports whether a marker was
// queued: false when there is nothing new to mark, when Config.NoMarkers is
// set, after Close, or when the outbox is full (then the message stays the
// one to mark, and a later call may send the marker). It never blocks.
//
// With Config.OnMessage set, the newest markable message is the newest one
// OnMessage has been called with: a callback that marks its message marks
// that one, never one the reader has read ahead of the application.
//
// For a room joined with package muc, peer may be the room or any of its
// occupants (Incoming.From of a group chat message): the marker goes to the
// room, for the newest message another occupant sent there (see
// muc.Room.MarkDisplayed), which may be newer than the one OnMessage is
// running with: the room's marker is cumulative and its reader does not wait
// for the application. Group chat messages of rooms not joined through
// package muc are never marked.
func (c *Client) MarkDisplayed(peer jid.JID) bool { return c.mark(peer.Bare(), true) }

// MarkRoom is MarkDisplayed for a room that an Observer took over
// (Observer.Room, Route and Mark), for extensions such as package muc: it
// queues a displayed marker, sent to room as a group chat message, for the
// id that the observer's Mark returns. Unlike MarkDisplayed it never takes
// the one-to-one path: it returns false when no observer takes over room
// (the room was left, or was never joined), so that a private message from
// an occupant, remembered under the room's bare JID, is never marked as the
// room's. Otherwise it reports what MarkDisplayed reports.
func (c *Client) MarkRoom(room jid.JID) bool { return c.mark(room.Bare(), false) }

// mark queues a displayed marker for peer (a bare JID): to the room, when an
// observer takes it over, else, if oneToOne, for the newest markable message
// remembered for peer. The observer is looked up under the recipient's lock,
// so a room being removed is either marked as the room or not at all.
func (c *Client) mark(peer jid.JID, oneToOne bool) bool {
	if c.cfg.NoMarkers || c.ctx.Err() != nil {
		return false
	}
	r := c.rcp
	key := peer.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if o := c.roomOf(peer); o != nil && o.Mark != nil {
		if _, queued := r.markerAt[key]; !queued && len(r.out) >= outboxSize {
			// Full: leave the room's newest message to mark for later.
			r.c.log.Debug("xmpptrack: outbox full, room marker not queued", "to", key)
			return false
		}
		id := o.Mark()
		return id != "" && r.queueLocked(key, answer{to: peer, typ: xstanza.GroupChatMessage, ref: id, marker: true})
	}
	if !oneToOne {
		return false
	}
	a, ok := r.markable[key]
	if !ok || !r.queueLocked(key, a) {
		return false
	}
	delete(r.markable, key)
	return true
}

// forget drops the newest markable message remembered for peer (a bare
// JID), if any.
func (r *recipient) forget(peer string) {
	r.mu.Lock()
	delete(r.markable, peer)
	r.mu.Unlock()
}

// take moves the outbox's answers to the end of dst.
func (r *recipient) take(dst []answer) []answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	dst = append(dst, r.out...)
	clear(r.out) // drop the JIDs' strings
	r.out = r.out[:0]
	clear(r.markerAt)
	return dst
}

// run writes queued answers until the client closes. It keeps working
// during Shutdown: peers are still answered while our own messages settle.
// Answers whose write fails are written again on the next connection (see
// wire.Write: the one that failed was not counted, those before it were).
func (r *recipient) run() {
	var (
		pending []answer // taken from the outbox; pending[next:] are not written yet
		next    int
		rs      []xml.TokenReader
		stale   *xmpp.Session // the session of the last failed write
	)
	for {
		if next == len(pending) {
			clear(pending)
			pending, next = pending[:0], 0
			select {
			case <-r.ready:
			case <-r.c.ctx.Done():
				return
			}
			pending = r.take(pending)
			continue
		}
		s, err := r.c.waitSession(r.c.ctx, stale, true)
		if err != nil {
			return
		}
		for next < len(pending) {
			// Answers are stanzas like any other: they take places in
			// StreamManagement.MaxUnacked, so a peer's requests cannot
			// grow the queue of unacknowledged stanzas past it; they do
			// not wait for the places Sends hold through their
			// write-ahead, so a stalled store holds back no receipt.
			slot, err := r.c.sm.ReserveAnswers(r.c.ctx, min(answerBatch, len(pending)-next))
			if err != nil {
				return
			}
			rs = rs[:0]
			for _, a := range pending[next : next+slot.Places()] {
				rs = append(rs, a.stanza())
			}
			n, err := wire.Write(r.c.ctx, s, rs...)
			slot.Release()
			next += n
			if err != nil {
				r.c.log.Debug("xmpptrack: answers not written; writing them on the next connection",
					"pending", len(pending)-next, "err", err)
				stale = s
				break
			}
		}
	}
}

func (a answer) stanza() xml.TokenReader {
	var payload xml.TokenReader
	if a.marker {
		payload = stanza.Marker{Type: stanza.MarkerDisplayed, ID: a.ref}.TokenReader()
		if a.thread != "" {
			payload = xmlstream.MultiReader(payload, xmlstream.Wrap(
				xmlstream.Token(xml.CharData(a.thread)), xml.StartElement{Name: xml.Name{Local: "thread"}}))
		}
	} else {
		payload = stanza.Receipt{ID: a.ref}.TokenReader()
	}
	typ := a.typ
	if typ == "" {
		typ = xstanza.NormalMessage
	}
	return xstanza.Message{To: a.to, Type: typ, ID: NewID()}.Wrap(payload)
}

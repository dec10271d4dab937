package xmpptrack

import (
	"encoding/xml"
	"strings"
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
	outboxSize = 4096
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
	out      []answer            // the outbox, oldest first
	markerAt map[string]int      // conversation -> index in out of its queued displayed marker
	marks    markables           // newest markable message per conversation (see remember)
	pending  map[string]arrivals // full JID -> its markable messages waiting for OnMessage
}

// answer is a receipt or a marker to send.
type answer struct {
	to     jid.JID
	typ    xstanza.MessageType
	ref    string // id of the message it refers to
	thread string
	marker bool // a displayed marker instead of a receipt
	// occupant: to is a room's occupant, written to in private; the
	// answer carries the muc#user <x/> (see private.go).
	occupant bool
}

func newRecipient(c *Client) *recipient {
	return &recipient{
		c:        c,
		ready:    make(chan struct{}, 1),
		markerAt: make(map[string]int),
		marks:    newMarkables(),
		pending:  make(map[string]arrivals),
	}
}

// received handles a content message from a peer (never an error, group
// chat, carbon, receipt or marker: the tap filters those, so there are no
// loops). It runs on the Serve goroutine and never blocks. With
// Config.OnMessage set, the message is remembered as markable only once
// OnMessage is called with it (see Client.deliver).
func (r *recipient) received(ev *stanza.Evidence) {
	if ev.ReceiptRequested && !r.c.cfg.NoReceipts {
		a := answer{to: ev.From, typ: ev.Type, ref: ev.ID}
		r.mu.Lock()
		a.occupant = r.occupantLocked(ev)
		r.queueLocked("", a)
		r.mu.Unlock()
	}
	if ev.Markable && r.c.cfg.OnMessage == nil && !r.c.cfg.NoMarkers {
		r.remember(ev.From, ev.From.String(), r.c.senderOf(ev), ev.Type, ev.ID, ev.Thread, 0)
	}
}

// occupantLocked reports whether ev's sender is a room's occupant writing
// in private: ev.From is a full JID and ev carries the muc#user <x/>, or its
// bare JID is a room, taken over by an observer or known as one. The caller
// holds r.mu.
func (r *recipient) occupantLocked(ev *stanza.Evidence) bool {
	switch {
	case ev.From.Resourcepart() == "":
		return false
	case ev.MUCUser || r.c.roomOf(ev.From.Bare()) != nil:
		return true
	}
	return len(r.marks.rooms) != 0 && r.marks.isRoom(ev.From.Bare().String())
}

// remember remembers the newest markable message of a conversation, for
// MarkDisplayed: under the sender's bare JID (a person's messages are one
// conversation whatever their device), or under its full JID for a room
// occupant writing in private, whose bare JID is the room's and is shared by
// every occupant. A message from a full JID whose bare JID is known to be a
// room (by an earlier occupant's <x/>, or a room joined before) or whose
// room is joined is an occupant's even without the <x/>; a known or joined
// room's own message (its bare JID) is never remembered. A private message
// from an occupant of a room an observer took over is not remembered once
// the room is left: that is checked under the lock that forgetRoom takes
// after the observer's removal, so the message is either forgotten with the
// room's or never remembered. full is from's string. n is the message's
// number from arrived, 0 when it was not numbered: one whose sender went
// after it arrived is not remembered as an occupant's.
func (r *recipient) remember(from jid.JID, full string, kind senderKind, typ xstanza.MessageType, id, thread string, n uint64) {
	if r.c.cfg.NoMarkers {
		return
	}
	room := bareOf(full)
	bare := from.Bare()
	a := answer{to: from, typ: typ, ref: id, thread: thread, marker: true}
	r.mu.Lock()
	defer r.mu.Unlock()
	gone := n != 0 && r.settleLocked(full, n)
	if kind == senderRoomOccupant && r.c.roomOf(bare) == nil {
		return // the room was left since the message arrived
	}
	if kind == senderAccount && (r.marks.isRoom(room) || r.c.roomOf(bare) != nil) {
		if from.Resourcepart() == "" {
			return // the room's own
		}
		kind = senderOccupant
	}
	if kind != senderAccount && gone {
		return // the occupant left, or changed nick, since
	}
	if kind == senderAccount {
		a.to = bare
		r.marks.putAccount(room, a)
		return
	}
	a.occupant = true
	r.marks.learnRoom(room)
	r.marks.putOccupant(room, full, a)
}

// bareOf returns the bare JID's string of the JID whose string is full:
// full up to its resource (a localpart or domainpart holds no '/').
func bareOf(full string) string {
	if i := strings.IndexByte(full, '/'); i >= 0 {
		return full[:i]
	}
	return full
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
	if a.occupant {
		payload = xmlstream.MultiReader(payload, mucUser())
	}
	typ := a.typ
	if typ == "" {
		typ = xstanza.NormalMessage
	}
	return xstanza.Message{To: a.to, Type: typ, ID: NewID()}.Wrap(payload)
}

package trackcore

import (
	"sort"
	"strings"
)

// recentIncoming is how many incoming message ids a conversation remembers, so
// that a marker naming one of them covers our messages sent before it.
const recentIncoming = 8

// recentMarks is how many marker targets a conversation remembers.
const recentMarks = 4

// maxThreadMarks bounds the threads whose marker position a conversation
// remembers (peers choose thread ids).
const maxThreadMarks = 8

// conversation is one peer (bare JID) or room, with its pending trackers in
// send order. It exists while it has pending trackers.
//
// A tracker's position (Tracker.seq) is given at registration and given
// again, from the same counter, each time the message is written to the
// stream (Registry.Written): with concurrent senders, registration order is
// not wire order, and a marker covers what the peer received before the
// marked message. order stays sorted by position.
//
// A conversation takes 136 bytes, in the 144-byte class
// (TestTrackerLayout), and the ring of incoming ids 160 more once the peer
// sent one: many peers with a message or two pending each, and nothing
// received from most of them, is a usual shape.
type conversation[R any] struct {
	g     *group[R]
	jid   string
	order []*Tracker[R] // pending trackers by position; settled ones until swept
	peak  uint32        // longest order since its array was last copied (sweep)
	live  uint32        // entries of order that are not settled; below maxConvLive
	next  uint32        // position of the next message, in either direction
	rnext uint8         // next slot of recent
	dirty bool          // settled entries wait in order for a sweep
	room  bool          // a group chat: no one-to-one evidence (TrackOptions.Room)
	full  bool          // jid is a full JID: a private conversation with one resource or occupant

	// recent holds the ids of the last messages the peer sent us, allocated
	// by the first one (remember).
	recent *recentIn

	// mk is the displayed-marker state, allocated by the first marker:
	// most conversations never get one.
	mk *markState[R]

	// shared is the extra of the trackers that have none of their own
	// (see Tracker): c is the conversation itself, the rest stays zero.
	shared extra[R]
}

// recentIn is a ring of recent incoming message ids and their positions
// (two arrays: 160 bytes, 32 less than one of pairs).
type recentIn struct {
	ids  [recentIncoming]string
	seqs [recentIncoming]uint32
}

// maxConvLive bounds the pending trackers of one conversation: positions
// are compared modulo 2^32 (before), so fewer than 2^31 may be pending in
// one conversation, and live, peak and len(order) (at most about twice
// live between sweeps) fit in 32 bits. At 24 bytes a tracker, the bound
// is about 50 GB of trackers in one conversation.
const maxConvLive = 1<<31 - 1

// newConversation returns an empty conversation of group g with key jid.
func newConversation[R any](g *group[R], jid string) *conversation[R] {
	c := &conversation[R]{g: g, jid: jid, full: strings.IndexByte(jid, '/') >= 0}
	c.shared.c = c
	return c
}

// markState is what a conversation remembers of displayed markers.
type markState[R any] struct {
	// marks holds, per thread, the position the thread's last marker
	// covered: the next marker of the thread walks only the messages after
	// it. Nil until a threaded marker arrives. mark is the same for
	// markers without a thread, valid when marked.
	marks  map[string]uint32
	mark   uint32
	marked bool

	// named holds the ids and positions of the last few markers' messages,
	// so that a repeated marker still places after its message settled and
	// left the index.
	named [recentMarks]incoming
	nnext uint8

	// late holds pending trackers that reached DeliveredToRecipient after
	// a marker had covered their position: that marker did not lift them
	// (they had no proof then), the next one may. Usually empty. lateMin
	// is the lowest position among them (valid while late is not empty):
	// a marker below it lifts none, and returns without walking them.
	late    []*Tracker[R]
	lateMin uint32
}

// addLate adds t to late.
func (m *markState[R]) addLate(t *Tracker[R]) {
	if len(m.late) == 0 || before(t.seq, m.lateMin) {
		m.lateMin = t.seq
	}
	m.late = append(m.late, t)
}

type incoming struct {
	id  string
	seq uint32
}

// from reports whether receipts and markers from the sender (bare and full
// JID; full "" without a resource) count for the conversation: any resource
// of a bare-JID peer, exactly the full JID of a private conversation.
func (c *conversation[R]) from(bare, full string) bool {
	if c.full {
		return full != "" && full == c.jid
	}
	return bare == c.jid
}

// before reports whether position a comes before or at b, modulo 2^32.
func before(a, b uint32) bool { return int32(a-b) <= 0 }

// position returns the position of the message with the given id in the
// conversation: one of our pending trackers, or a recent incoming message.
func (c *conversation[R]) position(t *Tracker[R], id string) (uint32, bool) {
	if t != nil && t.conv() == c {
		return t.seq, true
	}
	if in := c.recent; in != nil {
		for i, rid := range in.ids {
			if rid != "" && rid == id {
				return in.seqs[i], true
			}
		}
	}
	if c.mk != nil {
		for i := range c.mk.named {
			if in := &c.mk.named[i]; in.id != "" && in.id == id {
				return in.seq, true
			}
		}
	}
	return 0, false
}

// displayed applies a displayed marker at position upTo (see
// Registry.Displayed): the named tracker, if any, and every earlier pending
// tracker in DeliveredToRecipient become SeenByRecipient; with a thread, only
// trackers of that thread. A repeated marker costs O(log n): the walk over
// order starts after the last marker's position, and late is walked only
// when the marker reaches the lowest position in it, of whatever thread
// (see liftLate).
func (c *conversation[R]) displayed(named *Tracker[R], id string, upTo uint32, thread string, resp *R) {
	if c.mk == nil {
		c.mk = &markState[R]{}
	}
	c.mk.rememberMark(id, upTo)
	if named != nil && (thread == "" || named.thread() == thread) {
		named.transition(SeenByRecipient, resp) // its own marker: direct proof
	}
	c.liftLate(upTo, thread, resp)
	start, ok := c.markStart(thread, upTo)
	if !ok {
		return
	}
	for _, t := range c.order[start:] {
		if !before(t.seq, upTo) {
			break
		}
		if thread != "" && t.thread() != thread {
			continue
		}
		if t.State() == DeliveredToRecipient {
			t.transition(SeenByRecipient, resp)
		}
	}
}

// rememberMark records a marker's message, unless it is already known.
func (m *markState[R]) rememberMark(id string, pos uint32) {
	for i := range m.named {
		if m.named[i].id == id {
			return
		}
	}
	m.named[m.nnext%recentMarks] = incoming{id: id, seq: pos}
	m.nnext++
}

// liftLate lifts the late trackers the marker covers and forgets those that
// settled.
// A marker below every late tracker's position (a stale or repeated one)
// returns at once: a recipient repeating old markers costs O(1) each, not
// O(late). Settled trackers wait in late until a marker walks it.
func (c *conversation[R]) liftLate(upTo uint32, thread string, resp *R) {
	m := c.mk
	if len(m.late) == 0 || !before(m.lateMin, upTo) {
		return
	}
	kept := m.late[:0]
	for _, t := range m.late {
		if t.Settled() {
			continue
		}
		if before(t.seq, upTo) && (thread == "" || t.thread() == thread) && t.State() == DeliveredToRecipient {
			t.transition(SeenByRecipient, resp)
			continue
		}
		if len(kept) == 0 || before(t.seq, m.lateMin) {
			m.lateMin = t.seq
		}
		kept = append(kept, t)
	}
	clear(m.late[len(kept):])
	m.late = kept
}

// covered reports whether a marker already walked past t's position, so
// that t, reaching DeliveredToRecipient now, must wait in late for the
// next marker. The caller holds the lock.
func (c *conversation[R]) covered(t *Tracker[R]) bool {
	m := c.mk
	if m == nil {
		return false
	}
	if m.marked && before(t.seq, m.mark) {
		return true
	}
	if m.marks == nil {
		return false
	}
	th := t.thread()
	if th == "" {
		return false
	}
	pos, ok := m.marks[th]
	return ok && before(t.seq, pos)
}

// markStart returns where in order a marker (of the thread, or without
// one) covering upTo must start its walk, and false when an earlier marker
// of the same kind covered upTo already. It records upTo as the position.
func (c *conversation[R]) markStart(thread string, upTo uint32) (int, bool) {
	if thread != "" {
		return c.threadStart(thread, upTo)
	}
	m := c.mk
	if m.marked && before(upTo, m.mark) {
		return 0, false
	}
	start := 0
	if m.marked {
		from := m.mark
		start = sort.Search(len(c.order), func(i int) bool { return !before(c.order[i].seq, from) })
	}
	m.mark, m.marked = upTo, true
	return start, true
}

// threadStart returns where in order a marker of the thread covering upTo
// must start its walk, and false when an earlier marker of the thread
// covered upTo already. It records upTo as the thread's position.
func (c *conversation[R]) threadStart(thread string, upTo uint32) (int, bool) {
	m := c.mk
	from, ok := m.marks[thread]
	if ok && before(upTo, from) {
		return 0, false
	}
	start := 0
	if ok {
		// order is in send order; everything of the thread up to from
		// was covered by the earlier marker.
		start = sort.Search(len(c.order), func(i int) bool { return !before(c.order[i].seq, from) })
	}
	if m.marks == nil {
		m.marks = make(map[string]uint32)
	}
	if _, known := m.marks[thread]; !known && len(m.marks) >= maxThreadMarks {
		for k := range m.marks { // forget one; its next marker walks from the start
			delete(m.marks, k)
			break
		}
	}
	m.marks[thread] = upTo
	return start, true
}

// written gives t the next position and moves it to the end of order,
// which stays sorted by position. The search goes backwards from the end:
// writes in about registration order find t near it.
func (c *conversation[R]) written(t *Tracker[R]) {
	for i := len(c.order) - 1; i >= 0; i-- {
		if c.order[i] == t {
			copy(c.order[i:], c.order[i+1:])
			c.order[len(c.order)-1] = t
			t.seq = c.next
			c.next++
			return
		}
	}
}

// remember records an incoming message id at the current position.
func (c *conversation[R]) remember(id string) {
	if c.recent == nil {
		c.recent = &recentIn{}
	}
	c.recent.ids[c.rnext%recentIncoming] = id
	c.recent.seqs[c.rnext%recentIncoming] = c.next
	c.rnext++
	c.next++
}

// sweep drops settled trackers from the front of order, and compacts order
// when settled entries outnumber live ones, so memory follows the number of
// pending trackers. The cost is amortized O(1) per settled tracker.
func (c *conversation[R]) sweep() {
	c.dirty = false
	i := 0
	for i < len(c.order) && c.order[i].Settled() {
		c.order[i] = nil
		i++
	}
	if i > 0 {
		c.order = c.order[i:]
	}
	if dead, live := len(c.order)-int(c.live), int(c.live); dead > 16 && dead > live {
		kept := c.order[:0]
		for _, t := range c.order {
			if !t.Settled() {
				kept = append(kept, t)
			}
		}
		clear(c.order[len(kept):])
		c.order = append([]*Tracker[R](nil), kept...)
		c.peak = uint32(len(c.order))
	} else if c.peak > 1024 && len(c.order) < int(c.peak/4) {
		// Trimmed from the front, order still holds the array of its
		// largest burst: copy what is left, as the compaction does.
		c.order = append([]*Tracker[R](nil), c.order...)
		c.peak = uint32(len(c.order))
	}
}

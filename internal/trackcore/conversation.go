package trackcore

import "sort"

// recentIncoming is how many incoming message ids a conversation remembers, so
// that a marker naming one of them covers our messages sent before it.
const recentIncoming = 8

// maxThreadMarks bounds the threads whose marker position a conversation
// remembers (peers choose thread ids).
const maxThreadMarks = 8

// conversation is one peer (bare JID) or room, with its pending trackers in
// send order. It exists while it has pending trackers.
type conversation[R any] struct {
	g     *group[R]
	jid   string
	order []*Tracker[R] // pending trackers in send order; settled ones until swept
	live  int           // entries of order that are not settled
	next  uint32        // position of the next message, in either direction
	dirty bool          // settled entries wait in order for a sweep
	room  bool          // a group chat: no one-to-one evidence (TrackOptions.Room)

	recent [recentIncoming]incoming // ring of recent incoming message ids
	rnext  uint8

	// marks holds, per thread, the position the thread's last marker
	// covered: a marker that covers no more is ignored in O(1), and the
	// next one walks only the messages after it. Nil until a threaded
	// marker arrives.
	marks map[string]uint32
}

type incoming struct {
	id  string
	seq uint32
}

// before reports whether position a comes before or at b, modulo 2^32.
func before(a, b uint32) bool { return int32(a-b) <= 0 }

// position returns the position of the message with the given id in the
// conversation: one of our pending trackers, or a recent incoming message.
func (c *conversation[R]) position(t *Tracker[R], id string) (uint32, bool) {
	if t != nil && t.c == c {
		return t.seq, true
	}
	for i := range c.recent {
		if in := &c.recent[i]; in.id != "" && in.id == id {
			return in.seq, true
		}
	}
	return 0, false
}

// threadStart returns where in order a marker of the thread covering upTo
// must start its walk, and false when an earlier marker of the thread
// covered upTo already. It records upTo as the thread's position.
func (c *conversation[R]) threadStart(thread string, upTo uint32) (int, bool) {
	from, ok := c.marks[thread]
	if ok && before(upTo, from) {
		return 0, false
	}
	start := 0
	if ok {
		// order is in send order; everything of the thread up to from
		// was covered by the earlier marker.
		start = sort.Search(len(c.order), func(i int) bool { return !before(c.order[i].seq, from) })
	}
	if c.marks == nil {
		c.marks = make(map[string]uint32)
	}
	if _, known := c.marks[thread]; !known && len(c.marks) >= maxThreadMarks {
		for k := range c.marks { // forget one; its next marker walks from the start
			delete(c.marks, k)
			break
		}
	}
	c.marks[thread] = upTo
	return start, true
}

// remember records an incoming message id at the current position.
func (c *conversation[R]) remember(id string) {
	c.recent[c.rnext%recentIncoming] = incoming{id: id, seq: c.next}
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
	if dead := len(c.order) - c.live; dead > 16 && dead > c.live {
		kept := c.order[:0]
		for _, t := range c.order {
			if !t.Settled() {
				kept = append(kept, t)
			}
		}
		clear(c.order[len(kept):])
		c.order = append([]*Tracker[R](nil), kept...)
	}
}

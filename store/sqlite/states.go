package sqlite

import "github.com/xmpptrack/xmpptrack/tracking"

// msgState is what the committer needs of an unsettled message to apply a
// change: its row and its state.
type msgState struct {
	n       int64
	state   tracking.MessageState
	settled bool
}

// statesCap bounds the messages the cache holds: between statesCap/2 and
// statesCap of the most recently written ones.
const statesCap = 1 << 16

// states caches the state of the unsettled messages the committer wrote
// recently, so that a change costs no read. It is a hint: the update that
// writes a change checks the row against it (see writer.flush). Two
// generations bound it: when the current one is full it becomes the old
// one, and the old one is dropped. Only the committer goroutine uses it.
type states struct {
	cur, old map[string]msgState
}

func (c *states) get(id string) (msgState, bool) {
	if ms, ok := c.cur[id]; ok {
		return ms, true
	}
	ms, ok := c.old[id]
	return ms, ok
}

func (c *states) put(id string, ms msgState) {
	if c.cur == nil {
		c.cur = map[string]msgState{}
	}
	if _, ok := c.cur[id]; !ok && len(c.cur) >= statesCap/2 {
		c.old, c.cur = c.cur, map[string]msgState{}
	}
	c.cur[id] = ms
	delete(c.old, id)
}

func (c *states) remove(id string) {
	delete(c.cur, id)
	delete(c.old, id)
}

func (c *states) clear() { c.cur, c.old = nil, nil }

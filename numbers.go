package xmpptrack

import (
	"sync"

	"github.com/xmpptrack/xmpptrack/store"
)

// A message's number in the store (store.Message.Seq, recorded from
// sm.Config.OnWritten) means something only on the stream that counted it:
// after a restart, reload judges it against the stored stream-management
// state (acknowledged when the state's Acked covers it, else given back to
// sm.State.Restore at its place on that stream). A number of another stream
// would be judged by counts that never included it: a message taken as
// acknowledged and never sent again.
//
// That can happen. When a stream cannot be resumed, the connection binds a
// new one and re-sends the old stream's unacknowledged messages on it, where
// they are numbered again; until then their stored numbers are the old
// stream's, and a state of the new stream saved meanwhile (the recorder
// saves every sessionEvery, and the re-sends can take long: paced, or one
// at a time after a policy violation; a message the Policy did not re-send
// is never numbered again) would stand beside them. A batch can also drain
// numbers of the old connection together with the new stream's state.
//
// So the recorder keeps this rule for the store: every number it keeps for
// an unsettled message belongs to the stream of the stored state. A batch
// that saves the state of another stream voids (Seq 0, which reload takes
// for no number) the numbers the store keeps, and records only those
// counted on a connection from the one the new state was read on; a
// message without a number is "unsure" for sm.State.Restore (sent again
// when the server's count covers its guessed place: at worst twice, never
// lost). The stream is read again after the drain: if it changed
// meanwhile, the drained numbers may be of either stream, and none is
// recorded.

// numbered is a message number to record, with the connection it was
// counted on (durable.gen).
type numbered struct {
	store.Written
	gen uint64
}

// numbers is what the store keeps of message numbers (see above).
type numbers struct {
	mu     sync.Mutex
	stream string              // the stream they belong to: of the state last committed (or restored)
	ids    map[string]struct{} // the unsettled messages with a number in the store
}

// restored notes the state and the numbers a previous process left.
func (n *numbers) restored(stream string, ids []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stream = stream
	for _, id := range ids {
		n.note(id)
	}
}

func (n *numbers) note(id string) {
	if n.ids == nil {
		n.ids = map[string]struct{}{}
	}
	n.ids[id] = struct{}{}
}

// tie returns the numbers to write with a batch that saves (or keeps) the
// state sess, read with connection gen current (see above).
func (d *durable) tie(seqs []numbered, sess store.Session, gen uint64) []store.Written {
	c := d.client.Load()
	plain := func(seqs []numbered) []store.Written {
		out := make([]store.Written, 0, len(seqs))
		for _, s := range seqs {
			out = append(out, s.Written)
		}
		return out
	}
	if c == nil {
		return plain(seqs) // no connection yet: none
	}
	stable := c.sm.Resumption().ID == sess.ID // stream IDs never come back
	n := &d.nums
	n.mu.Lock()
	defer n.mu.Unlock()
	if stable && sess.ID == n.stream {
		return plain(seqs)
	}
	var keep []store.Written
	kept := map[string]bool{}
	for _, s := range seqs {
		if stable && s.gen >= gen {
			keep = append(keep, s.Written)
			kept[s.ID] = true
		}
	}
	out := make([]store.Written, 0, len(n.ids)+len(keep))
	for id := range n.ids {
		if !kept[id] {
			out = append(out, store.Written{ID: id})
		}
	}
	return append(out, keep...)
}

// committed notes what a committed batch did to the store's numbers.
func (n *numbers) committed(b *store.Batch) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(b.Sessions) > 0 {
		n.stream = b.Sessions[len(b.Sessions)-1].ID
	}
	for _, w := range b.Written {
		if w.Seq == 0 {
			delete(n.ids, w.ID)
		} else {
			n.note(w.ID)
		}
	}
	for _, c := range b.Changes {
		if store.SettledState(c.State) {
			delete(n.ids, c.ID) // its number no longer counts
		}
	}
	if len(n.ids) == 0 {
		n.ids = nil // let the map's memory go
	}
}

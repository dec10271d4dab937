package xmpptrack

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/xmpptrack/xmpptrack/sm"
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
// that saves the state of another stream records only the numbers counted
// on a connection from the one the new state was read on, and voids (Seq
// 0) every other: those the store keeps, and those of older connections
// drained with it. Voided, never left out: such a message reached an
// earlier stream, whose server may have it, so reload takes it for
// ambiguous (sm.Stanza.Ambiguous), and the first resumption after the
// restart looks it up in the account's archive before it is written
// again, as it does every restored message its h does not settle (see
// archive.go).
//
// The stream is read again after the drain: if it changed meanwhile, the
// drained numbers may be of either stream. They go back to be drained
// again with a state read anew (take), so that a saved outbound count
// never covers a number that was not recorded: sm.State.Restore takes the
// saved count for exact.

// numbered is a message number to record, with the connection it was
// counted on (durable.counts).
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

// take reads the stream-management state to save (see durable.session)
// and drains the message numbers its outbound count covers, tied to it.
func (d *durable) take() (sess store.Session, changed bool, written []store.Written) {
	for {
		sess, changed, gen := d.session()
		if hook := d.readHook.Load(); hook != nil {
			(*hook)()
		}
		d.mu.Lock()
		seqs := d.seqs
		d.seqs = nil
		d.mu.Unlock()
		if written, ok := d.tie(seqs, sess, gen); ok {
			return sess, changed, written
		}
		d.mu.Lock()
		d.seqs = append(seqs, d.seqs...) // drained first, so reported first
		d.mu.Unlock()
	}
}

// tie returns the numbers to write with a batch that saves (or keeps) the
// state sess, read with connection gen current, or false when the stream
// changed since (see above).
func (d *durable) tie(seqs []numbered, sess store.Session, gen uint64) ([]store.Written, bool) {
	c := d.client.Load()
	plain := func(seqs []numbered) []store.Written {
		out := make([]store.Written, 0, len(seqs))
		for _, s := range seqs {
			out = append(out, s.Written)
		}
		return out
	}
	if c == nil {
		return plain(seqs), true // no connection yet: none
	}
	if c.sm.Resumption().ID != sess.ID { // stream IDs never come back
		return nil, false
	}
	n := &d.nums
	n.mu.Lock()
	defer n.mu.Unlock()
	if sess.ID == n.stream {
		return plain(seqs), true
	}
	var keep []store.Written
	kept := map[string]bool{}
	for _, s := range seqs {
		if s.gen >= gen {
			keep = append(keep, s.Written)
			kept[s.ID] = true
		}
	}
	void := map[string]bool{}
	for id := range n.ids {
		void[id] = !kept[id]
	}
	for _, s := range seqs {
		void[s.ID] = !kept[s.ID]
	}
	out := make([]store.Written, 0, len(void)+len(keep))
	for _, id := range slices.Sorted(maps.Keys(void)) {
		if void[id] {
			out = append(out, store.Written{ID: id})
		}
	}
	return append(out, keep...), true
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

// void voids the stored numbers of the messages a resumption held back
// (sm.Config.OnAmbiguous): the stream no longer counts them (it goes on
// from the server's h, and the next stanza written takes the number such
// a message had), so a number left in the store would stand beside
// another message's under a later saved count, or beside a stale one the
// store holds already. Voided, such a message is ambiguous after a
// restart (see reload) until it is settled or numbered again, as it
// should be: it may have reached the server. The voids are committed at
// once, not through the recorder: the connection writes nothing on the
// resumed stream until they are (see Client.voidHeld).
// A message voided once stays so while held (it is not written while
// held): a later resumption that holds it back again commits nothing for
// it, so that a store failing then does not end that connection.
func (d *durable) void(ctx context.Context, held []sm.Stanza) error {
	b := &store.Batch{}
	d.mu.Lock()
	for _, s := range held {
		if s.Name == "message" && s.ID != "" && !d.voided[s.ID] {
			b.Written = append(b.Written, store.Written{ID: s.ID})
		}
	}
	d.mu.Unlock()
	if len(b.Written) == 0 {
		return nil
	}
	err := d.st.Commit(ctx, b)
	if errors.Is(err, store.ErrCursorsUnknown) {
		err = nil // stored
	}
	if err != nil {
		return err
	}
	d.nums.committed(b)
	d.mu.Lock()
	if d.voided == nil {
		d.voided = map[string]bool{}
	}
	for _, w := range b.Written {
		d.voided[w.ID] = true
	}
	d.mu.Unlock()
	return nil
}

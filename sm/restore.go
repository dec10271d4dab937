package sm

import (
	"errors"
	"slices"
	"time"

	"mellium.im/xmpp/jid"
)

// Resumption is what a process needs to resume the stream after a
// restart: the stream management session and its counters. A durable
// store saves it (with each unacknowledged stanza's number, reported to
// Config.OnWritten) and a new process hands it back to Restore.
type Resumption struct {
	// ID is the SM-ID ("" when the stream cannot be resumed). It is a
	// credential: never log it.
	ID       string
	Location string
	Max      time.Duration
	// JID is the full JID bound for the session.
	JID jid.JID
	// Handled is the inbound count (the h a resumption claims; from Tees
	// on it is bounded by Config.Handled); Read counts the stanzas of that
	// count read on the current connection (only those after <enabled/>
	// or <resumed/>: a stanza read before, such as the bind result, is
	// not), so that a caller that knows how many of them the application
	// finished can claim less (Handled - (Read - finished)).
	Handled, Read uint32
	// Told is the last h sent to the server in an <a/> (0 before the
	// first). The server drops what it covers, so a resumption never
	// claims less: some servers (Prosody 0.12) refuse an h below it.
	Told uint32
	// Sent is the number of the last stanza written, Acked the last h
	// the server acknowledged.
	Sent, Acked uint32
}

// Resumption returns the current resumption state.
func (st *State) Resumption() Resumption {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := Resumption{
		Location: st.location,
		Max:      time.Duration(st.max) * time.Second,
		JID:      st.jid,
		Handled:  st.inH,
		Read:     st.read,
		Told:     st.toldH,
		Sent:     st.outH,
		Acked:    st.ackedH,
	}
	if st.resumable {
		r.ID = st.id
	}
	return r
}

// ErrRestore is returned by Restore when the state is already in use.
var ErrRestore = errors.New("sm: Restore must be called before the first connection")

// Restore loads the state a previous process saved, before the first call
// of Tees: the next connection tries to resume r.ID with r.Handled as its
// h, or r.Told when that is higher (never less than an ack said; a zero
// Told counts as none sent), and if r.ID is empty it binds, and the
// Policy gets the stanzas. unacked
// are the stanzas written and not acknowledged, each with the Seq it got
// (after r.Acked, modulo 2^32), Name, ID, To, Raw and Sent; order does not
// matter. Numbers after r.Acked that no stanza claims (stanzas the store
// did not keep, such as receipts) are gaps: acknowledged or retransmitted
// as nothing, never reported; a stanza with a Seq and no Raw holds its
// number the same way (a message settled otherwise, whose number still
// counts). r.Sent is taken as exact: every stanza the store keeps that was
// numbered up to r.Sent must come with its Seq (a store saves the count
// together with all the numbers up to it).
//
// A stanza whose Seq is zero (its number was never recorded) is numbered
// after the others and after r.Sent, in the order given: it was written
// after them, or not at all. Its number is a guess, since stanzas a store
// does not keep may have been written before it: when the server's h
// (of <resumed/> or <failed/>) covers it, it is not taken as received but
// sent again, with the same id (logged at Warn). The recipient may then
// get it twice, and can tell by its id; nothing is lost. Above h it is
// retransmitted as usual. With Config.OnAmbiguous the caller settles such
// stanzas instead (see there), and s.Ambiguous marks one that an earlier
// stream left in doubt; the first resumption then also holds back every
// restored message above its h, numbered or not, for the caller to
// settle the same way. Stanzas the store does not keep may also have been
// written after r.Sent: the first <resumed h> may exceed the restored
// count by them, and resumes the stream all the same (they are counted as
// gaps, and every stanza without a recorded number is then covered).
//
// Restore does not parse the stanzas. One whose Raw is not one whole XML
// element (a damaged store) is settled by the server's h like any other;
// when it would be written again it goes to OnLost instead (a write of it
// would fail half way and cut the connection).
func (st *State) Restore(r Resumption, unacked []Stanza) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.conn != nil || st.outH != st.base || st.queue.len() > 0 {
		return ErrRestore
	}
	st.id, st.resumable = r.ID, r.ID != ""
	st.max = uint32(r.Max / time.Second)
	st.location = r.Location
	st.jid = r.JID
	st.inH = r.Handled
	st.toldH = r.Handled
	if r.Told != 0 && int32(r.Told-r.Handled) > 0 {
		st.toldH = r.Told // the server dropped what it covers
	}
	st.ackedH = r.Acked
	var known, unknown []Stanza
	for _, s := range unacked {
		if d := int32(s.Seq - r.Acked); s.Seq != 0 && d > 0 {
			known = append(known, s)
		} else {
			unknown = append(unknown, s)
		}
	}
	slices.SortStableFunc(known, func(a, b Stanza) int { return int(int32(a.Seq - b.Seq)) })
	next := r.Acked
	push := func(s Stanza, unsure bool) {
		next++
		st.ord++
		st.queue.push(entry{
			seq:    next,
			kind:   kindOf(s.Name),
			sent:   s.Sent.UnixNano(),
			ord:    st.ord,
			id:     s.ID,
			to:     s.To,
			raw:    s.Raw,
			unsure: unsure,
			doubt:  unsure && s.Ambiguous,
		})
	}
	gap := func(to uint32) {
		for int32(to-next) > 0 {
			next++
			st.ord++
			st.queue.push(entry{seq: next, ord: st.ord})
		}
	}
	for _, s := range known {
		gap(s.Seq - 1)
		if s.Seq == next { // a repeated number: keep the first
			unknown = append(unknown, s)
			continue
		}
		push(s, false)
	}
	// Stanzas the store did not keep (receipts, markers, presence) were
	// written up to r.Sent: count them, so that the server's h is not
	// taken to cover more of the stored ones than it does. Every stanza
	// without a recorded number came after them, or was never written.
	gap(r.Sent)
	for _, s := range unknown {
		push(s, true)
	}
	st.outH = next
	st.loose = true
	return nil
}

func kindOf(name string) kind {
	switch name {
	case "presence":
		return kindPresence
	case "iq":
		return kindIQ
	}
	return kindMessage
}

// Forget forgets the stream-management session, so that the next
// connection binds a new one instead of resuming it; the unacknowledged
// stanzas stay, for the Policy to apply on that connection. A client calls
// it when an attempt to resume a stream restored from a store broke the
// connection (a server that cannot take the resumption back).
func (st *State) Forget() {
	st.mu.Lock()
	st.dropSessionLocked()
	st.mu.Unlock()
}

// ackFor returns the h of an <a/> sent now, for received stanzas (see
// Config.Handled), and records it as told.
func (st *State) ackFor(received uint32) uint32 {
	h := st.handled(received)
	st.mu.Lock()
	defer st.mu.Unlock()
	if int32(h-st.toldH) > 0 {
		st.toldH = h
	}
	return st.toldH
}

// handled returns received bounded by Config.Handled (never above
// received), without the State's lock.
func (st *State) handled(received uint32) uint32 {
	h := received
	if f := st.cfg.Handled; f != nil {
		if l := f(received); int32(l-h) < 0 {
			h = l
		}
	}
	return h
}

package xmpptrack

// With Config.OnMessage set, a markable message is remembered only when its
// callback runs (see Client.deliver), behind the reader. An occupant that
// leaves meanwhile (its unavailable presence, or a new stream that was not
// resumed, read before the callback runs) must not have its message
// remembered afterwards: the nick may be somebody else's by then, and the
// marker, with the message's id and thread, theirs. The reader numbers each
// full JID's markable messages as it queues them, and records the number
// reached when the sender went; the callback's remember skips, as an
// occupant's, a message numbered up to it. Only full JIDs with a message
// waiting for its callback are kept, so this is bounded by the queue.

// arrivals is one full JID's markable messages queued for OnMessage.
type arrivals struct {
	queued    uint64 // messages queued so far; the newest one's number
	gone      uint64 // queued when the sender was last seen go
	delivered uint64 // messages whose callback has run
}

// arrived numbers a markable message from the full JID full queued for
// OnMessage; the number goes to settle once its callback runs (or it is
// not queued after all).
func (r *recipient) arrived(full string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.pending[full]
	a.queued++
	r.pending[full] = a
	return a.queued
}

// settleLocked records that the message numbered n from full is done with
// and reports whether its sender went after it arrived. The caller holds
// r.mu.
func (r *recipient) settleLocked(full string, n uint64) (gone bool) {
	a, ok := r.pending[full]
	if !ok {
		return false
	}
	a.delivered++
	if a.delivered >= a.queued {
		delete(r.pending, full)
	} else {
		r.pending[full] = a
	}
	return n <= a.gone
}

// settle is settleLocked for a message that is not delivered after all.
func (r *recipient) settle(full string, n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.settleLocked(full, n)
}

// goneLocked records that full went: its messages queued so far are not
// remembered as an occupant's. The caller holds r.mu.
func (r *recipient) goneLocked(full string) {
	if a, ok := r.pending[full]; ok {
		a.gone = a.queued
		r.pending[full] = a
	}
}

// allGoneLocked is goneLocked for every full JID. The caller holds r.mu.
func (r *recipient) allGoneLocked() {
	for full, a := range r.pending {
		a.gone = a.queued
		r.pending[full] = a
	}
}

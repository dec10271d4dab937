package trackcore

import (
	"context"
	"hash/maphash"
	"time"

	"mellium.im/xmpp/jid"
)

// Defaults for a zero Config.
const (
	DefaultMaxPending = 100_000
	DefaultWindow     = 5 * time.Minute
)

// Config configures a Registry. The zero value is ready to use.
type Config[R any] struct {
	// MaxPending bounds the number of trackers that are not settled. Track
	// waits and TryTrack fails with ErrTooManyPending at the bound. Zero means
	// DefaultMaxPending; a negative value means no bound.
	MaxPending int
	// Window is the default tracking window: when it ends, a tracker without
	// proof of delivery to the recipient becomes TimedOut, and one in
	// DeliveredToRecipient or Error stops being tracked. Zero means
	// DefaultWindow; a negative value means no window. Windows are capped at 24
	// days.
	Window time.Duration
	// OnStateChange, if set, is called for every state change of every tracker
	// of the registry, under the same rules as Tracker.OnStateChange and
	// before the tracker's own callbacks.
	OnStateChange Hook[R]
	// OnMade, if set, is called for every state change of every tracker of
	// the registry as it is made: under the registry's lock, on the
	// goroutine that made it (the one that reported the evidence, Track's
	// caller, the timer's), in the order the changes are made, before the
	// new state shows (Tracker.State) and before the change is queued for
	// the callbacks. It must only take note: never block, never call the
	// registry or its trackers (except their ID), never run application
	// code. What it notes is thus never behind a callback.
	OnMade Hook[R]
}

// maxChanges is the most state changes one tracker makes in its life:
// IN_TRANSIT, DELIVERED_TO_SERVER, ERROR, DELIVERED_TO_RECIPIENT,
// SEEN_BY_RECIPIENT (a test checks it against the graph).
const maxChanges = 4

// queueSlack is how many queued changes, beyond what the pending trackers
// can make on their own, the registry accepts before Track waits for the
// callbacks: room for a callback to send about queueSlack/maxChanges
// messages while it runs.
const queueSlack = 1024

// QueueLimit returns the number of queued state changes at which a
// registry with the given MaxPending (after defaults) stops admitting new
// trackers, and the most changes it can then hold. Both are zero for an
// unbounded registry (maxPending < 0).
func QueueLimit(maxPending int) (limit, most int) {
	if maxPending < 0 {
		return 0, 0
	}
	limit = queueSlack + maxChanges*maxPending
	return limit, limit - 1 + maxChanges*maxPending
}

// TrackOptions are per-message settings for Track.
type TrackOptions struct {
	// Window overrides the registry's window: zero keeps it, a negative value
	// means no window.
	Window time.Duration
	// Thread is the message's XEP-0201 thread, if any: a legacy marker that
	// names a thread covers only messages of that thread.
	Thread string
	// Room marks the conversation as a group chat. Its trackers then take
	// no evidence from Delivered, Displayed or Incoming, which carry
	// one-to-one evidence keyed by bare JID: a private message from an
	// occupant (room@service/nick, whose bare JID is the room's) must not
	// move the room's messages. Group-chat evidence goes to the trackers
	// directly (Advance), as package muc does; acks, losses
	// and error replies apply as usual.
	Room bool
}

// Registry holds the pending trackers of one account and turns evidence into
// transitions. It owns one lock, one timer and one callback queue for all of
// them, and at most one goroutine, which runs the callbacks: no tracker has
// a goroutine or a timer of its own.
//
// Backpressure: evidence is applied at once and its callbacks queued, so
// the goroutine reading the stream never waits for the application. What
// waits is admission: Track waits (TryTrack fails) while MaxPending
// trackers are pending, and while the callbacks lag behind by limit =
// 1024 + 4*MaxPending changes (see QueueLimit). Every change belongs to a
// tracker, a tracker makes at most 4 changes, and only the trackers pending
// when the last one was admitted can add changes after that: so a stuck
// callback holds at most limit - 1 + 4*MaxPending changes, and the trackers
// they name, however long it stays stuck and however many sends are
// attempted.
//
// A callback may call Track (Client.Send): it waits for a slot like any
// caller, and evidence keeps flowing, so a slot frees. It waits for the
// queue only if the queue reaches limit, which the callback's own run
// cannot drain: when the callback started with q changes queued, that
// takes more than (1024 - q)/4 messages sent, by the callback or others,
// while it runs (the pending trackers alone make at most 4*MaxPending).
// Beyond that the call waits until its context ends.
//
// Evidence methods take the conversation as a bare JID string ("bob@example.org"
// or "room@conference.example.org") and ignore evidence for unknown ids, for
// ids of another conversation, duplicates and late evidence: in O(1), or in
// O(log n) of the pending trackers for an id the registry made (see
// nums.find), the only ids that parse. Message ids are unique among pending
// trackers; lookups always check the conversation too, so evidence never
// crosses conversations.
type Registry[R any] struct {
	g      group[R]
	max    int
	window time.Duration
	epoch  time.Time

	ids   ownIDs  // makes and reads the ids the registry makes itself
	count uint64  // registration number of the next tracker
	byNum nums[R] // every pending tracker, by registration number

	seed  maphash.Seed
	index map[uint64]*Tracker[R]      // pending trackers with a foreign id, by seeded hash of the id
	peak  int                         // most entries index held since it was made (shrinkIndex)
	convs map[string]*conversation[R] // conversations with pending trackers
	nfull int                         // entries of convs keyed by a full JID
	dirty []*conversation[R]          // conversations waiting for a sweep

	timers  timers[R]
	timer   *time.Timer
	armed   bool
	armedAt uint32

	pending int
	limit   int           // queued changes at which Track waits; 0: none
	room    chan struct{} // closed when a slot frees or the queue drains; nil when nobody waits
	idle    chan struct{} // closed when nothing is pending; nil when nobody waits
	shut    bool
}

// NewRegistry returns an empty registry.
func NewRegistry[R any](cfg Config[R]) *Registry[R] {
	r := &Registry[R]{
		max:    cfg.MaxPending,
		window: cfg.Window,
		epoch:  time.Now(),
		ids:    newOwnIDs(),
		seed:   maphash.MakeSeed(),
		index:  make(map[uint64]*Tracker[R]),
		convs:  make(map[string]*conversation[R]),
	}
	if r.max == 0 {
		r.max = DefaultMaxPending
	}
	if r.window == 0 {
		r.window = DefaultWindow
	}
	if r.window > 0 {
		r.timers.def = uint32(min(r.window, maxWindow).Milliseconds())
	}
	r.limit, _ = QueueLimit(r.max)
	r.g.hook = cfg.OnStateChange
	r.g.made = cfg.OnMade
	r.g.reg = r
	return r
}

// Track registers a new pending message with the given id to the conversation
// to (a bare JID); an empty id asks the registry for a fresh one of its own
// (see ownIDs), which the tracker's ID returns. It waits while MaxPending trackers are pending or the
// callbacks lag by the queue limit, until that changes or ctx ends. Register a message before writing it, so that no
// evidence can arrive before its tracker.
func (r *Registry[R]) Track(ctx context.Context, to, id string, o TrackOptions) (*Tracker[R], error) {
	for {
		r.g.mu.Lock()
		if r.shut {
			r.g.mu.Unlock()
			return nil, ErrShutdown
		}
		if r.admits() {
			t, err := r.insert(to, id, o)
			r.unlock()
			return t, err
		}
		if r.room == nil {
			r.room = make(chan struct{})
		}
		room := r.room
		r.g.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// TryTrack is Track without waiting: where Track would wait it returns
// ErrTooManyPending.
func (r *Registry[R]) TryTrack(to, id string, o TrackOptions) (*Tracker[R], error) {
	r.g.mu.Lock()
	defer r.unlock()
	switch {
	case r.shut:
		return nil, ErrShutdown
	case !r.admits():
		return nil, ErrTooManyPending
	}
	return r.insert(to, id, o)
}

// Reinstate is TryTrack for a message already on its way, such as one
// that a store kept from an earlier process: it is tracked whatever
// MaxPending and the callbacks' lag, which bound the admission of new
// messages only (Track and TryTrack then wait or fail until the pending
// trackers fall below the bound again).
func (r *Registry[R]) Reinstate(to, id string, o TrackOptions) (*Tracker[R], error) {
	r.g.mu.Lock()
	defer r.unlock()
	if r.shut {
		return nil, ErrShutdown
	}
	return r.insert(to, id, o)
}

func (r *Registry[R]) insert(to, id string, o TrackOptions) (*Tracker[R], error) {
	var key uint64
	if id != "" {
		if len(id) > maxIDLen {
			return nil, ErrIDTooLong
		}
		key = r.key(id)
		if _, dup := r.index[key]; dup || r.byID(id) != nil {
			return nil, ErrDuplicateID
		}
	}
	c := r.convs[to]
	if c != nil && c.live >= maxConvLive { // about 50 GB of trackers to one peer
		return nil, ErrTooManyPending
	}
	if c == nil {
		c = newConversation(&r.g, to)
		r.convs[to] = c
		if c.full {
			r.nfull++
		}
	}
	c.room = c.room || o.Room
	t := &Tracker[R]{seq: c.next, num: r.count}
	r.count++
	c.next++
	w := uint32(inRegistry)
	if id != "" {
		w |= foreignID | uint32(len(id))<<idShift
		r.index[key] = t
		r.peak = max(r.peak, len(r.index))
	}
	if id != "" || o.Thread != "" {
		t.x.Store(&extra[R]{c: c, names: id + o.Thread})
	} else {
		t.x.Store(&c.shared)
	}
	window := o.Window
	if window == 0 {
		window = r.window
	}
	if window > 0 {
		w |= r.timers.add(t, uint32(min(window, maxWindow).Milliseconds()), r.now())
	}
	t.word.Store(w)
	c.order = append(c.order, t)
	c.peak = max(c.peak, uint32(len(c.order)))
	c.live++
	r.byNum.add(t)
	r.pending++
	if window > 0 {
		r.arm()
	}
	return t, nil
}

// maxIndexCopy bounds the entries shrinkIndex copies in one go, under the
// lock that Send and the receive path wait for: about a millisecond.
const maxIndexCopy = 8192

// shrinkIndex replaces the index by a map of its size once it holds fewer
// than a quarter of its peak and at most maxIndexCopy entries: a Go map
// never gives back the memory of its largest size, so a burst of 1,000,000
// pending messages would keep tens of MiB of index for the registry's life
// after they settled. Copying at a quarter costs each removal O(1)
// amortized; a registry shutting down (Close settles everything) does not
// copy. The caller holds the lock.
func (r *Registry[R]) shrinkIndex() {
	if r.peak <= 1024 || len(r.index) >= r.peak/4 || len(r.index) > maxIndexCopy || r.shut {
		return
	}
	m := make(map[uint64]*Tracker[R], len(r.index))
	for k, t := range r.index {
		m[k] = t
	}
	r.index, r.peak = m, len(m)
}

// forget removes a tracker that just settled from the index of foreign ids
// and counts it out of byNum and the timers, which drop it when swept. The
// caller holds the lock; byNum and the conversation are swept on unlock.
func (r *Registry[R]) forget(t *Tracker[R]) {
	w := t.word.Load()
	t.word.Store(w &^ (inRegistry | hasDeadline))
	if w&foreignID != 0 {
		delete(r.index, r.key(t.foreignID(w)))
		r.shrinkIndex()
	}
	if w&hasDeadline != 0 {
		r.timers.gone(w&ownWindow != 0)
	}
	r.byNum.dead++
	c := t.conv()
	c.live--
	if !c.dirty {
		c.dirty = true
		r.dirty = append(r.dirty, c)
	}
	r.pending--
	r.wakeTrack()
	if r.idle != nil && r.pending == 0 {
		close(r.idle)
		r.idle = nil
	}
}

// admits reports whether a new tracker may be registered now: fewer than
// MaxPending are pending and the callbacks lag by fewer than limit
// changes. The caller holds the lock.
func (r *Registry[R]) admits() bool {
	return r.max < 0 || r.pending < r.max && r.g.held < r.limit
}

// wakeTrack wakes the Track calls that wait, if one may proceed. The caller
// holds the lock.
func (r *Registry[R]) wakeTrack() {
	if r.room != nil && r.admits() {
		close(r.room)
		r.room = nil
	}
}

// unlock sweeps what settled, releases the lock and starts the callbacks.
func (r *Registry[R]) unlock() { r.g.unlock() }

func (r *Registry[R]) tidy() {
	for i, c := range r.dirty {
		if c.live == 0 {
			if r.convs[c.jid] == c {
				delete(r.convs, c.jid)
				if c.full {
					r.nfull--
				}
			}
			c.order, c.dirty, c.peak = nil, false, 0
			c.mk = nil
		} else {
			c.sweep()
		}
		r.dirty[i] = nil
	}
	r.dirty = r.dirty[:0]
	if r.byNum.dead > 0 {
		r.sweepNums()
	}
	r.timers.tidy()
	if r.timers.live == 0 && r.armed {
		r.arm()
	}
}

// key hashes a foreign id for the index. The seed is random per registry,
// so peers cannot aim ids at one bucket; the 8-byte key instead of the id
// string saves 16 bytes per entry.
func (r *Registry[R]) key(id string) uint64 { return maphash.String(r.seed, id) }

// byID returns the pending tracker with the id, or nil: one of the
// registry's own ids is found by its number, any other id in the index.
func (r *Registry[R]) byID(id string) *Tracker[R] {
	if n, ok := r.ids.parse(id); ok {
		// A caller may give an own id again (a retry of Send): the tracker
		// it was made for is then gone, and the new one is in the index.
		if t := r.byNum.find(n); t != nil && t.word.Load()&(inRegistry|foreignID) == inRegistry {
			return t
		}
	}
	if len(r.index) == 0 {
		return nil
	}
	if t := r.index[r.key(id)]; t != nil && t.foreignID(t.word.Load()) == id {
		return t
	}
	return nil
}

// lookup returns the pending tracker with the id in conversation conv, or nil.
func (r *Registry[R]) lookup(conv, id string) *Tracker[R] {
	t := r.byID(id)
	if t == nil || t.conv().jid != conv {
		return nil
	}
	return t
}

// Lookup returns the pending tracker of the message with the given id in the
// conversation conv, or nil.
func (r *Registry[R]) Lookup(conv, id string) *Tracker[R] {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.lookup(conv, id)
}

// Find returns the pending tracker of the message with the given id, in
// any conversation, or nil.
func (r *Registry[R]) Find(id string) *Tracker[R] {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.byID(id)
}

// Queued returns the number of state changes whose callbacks have not
// finished, and the number at which Track waits (0: no limit).
func (r *Registry[R]) Queued() (n, limit int) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.g.held, r.limit
}

// Pending returns the number of trackers that are not settled.
func (r *Registry[R]) Pending() int {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.pending
}

// advance applies one piece of evidence to the message id of conversation conv.
func (r *Registry[R]) advance(conv, id string, to State, resp *R) {
	r.g.mu.Lock()
	if t := r.lookup(conv, id); t != nil {
		t.transition(to, resp)
	}
	r.unlock()
}

// ServerAck records that our server acknowledged the message (XEP-0198):
// DeliveredToServer.
func (r *Registry[R]) ServerAck(conv, id string) { r.advance(conv, id, DeliveredToServer, nil) }

// lookupAddr is lookup for a message known by the to attribute it was
// written with: addr matches the tracker's conversation when it is the
// conversation key itself, else when conv(addr) is. Messages written by
// the client carry their key's own string (a key is the canonical form of
// the address), so the usual case costs a string comparison and never
// calls conv, which parses the address.
func (r *Registry[R]) lookupAddr(addr, id string, conv func(string) string) *Tracker[R] {
	t := r.byID(id)
	if t == nil {
		return nil
	}
	if key := t.conv().jid; key != addr && key != conv(addr) {
		return nil
	}
	return t
}

// ServerAckAddr is ServerAck for a message known by the to attribute addr
// it was written with; conv turns an address into its conversation key
// and is called only when addr is not a key already.
func (r *Registry[R]) ServerAckAddr(addr, id string, conv func(string) string) {
	r.g.mu.Lock()
	if t := r.lookupAddr(addr, id, conv); t != nil {
		t.transition(DeliveredToServer, nil)
	}
	r.unlock()
}

// WrittenAddr is Written for a message known by the to attribute addr it
// was written with (see ServerAckAddr).
func (r *Registry[R]) WrittenAddr(addr, id string, conv func(string) string) {
	r.g.mu.Lock()
	if t := r.lookupAddr(addr, id, conv); t != nil {
		if c := t.conv(); !c.room {
			c.written(t)
		}
	}
	r.g.mu.Unlock()
}

// Lost records that our server never acknowledged the message and that it will
// not be re-sent: Aborted (it may still have been delivered).
func (r *Registry[R]) Lost(conv, id string) { r.advance(conv, id, Aborted, nil) }

// Delivered records proof that a client of the recipient has the message (an
// XEP-0184 receipt or a legacy XEP-0333 received marker): DeliveredToRecipient.
// bare and full are the sender's bare and full JIDs (full is "" when the
// sender has no resource); the evidence counts only when it comes from the
// message's peer (see Conversation keys). The caller checks that it did not
// come from our own account. It ignores group-chat conversations (see
// TrackOptions.Room).
func (r *Registry[R]) Delivered(bare, full, id string, resp *R) {
	r.g.mu.Lock()
	if t := r.byID(id); t != nil {
		if c := t.conv(); !c.room && c.from(bare, full) {
			t.transition(DeliveredToRecipient, resp)
		}
	}
	r.unlock()
}

// Displayed records an XEP-0333 displayed marker (or a legacy acknowledged
// marker) from the sender (bare, full, as for Delivered) for the message
// id, in each conversation of the sender (see Conversation keys): that message becomes
// SeenByRecipient, and so does every earlier pending message of the
// conversation that is proven delivered (in DeliveredToRecipient when the
// marker arrives). Earlier messages without that proof keep their state and
// can still get their own receipt or marker: a marker says the recipient
// displayed the conversation up to here, which proves nothing about a
// message that never reached it (lost in a session that died, for example). The id
// may name one of our messages or a recent message the peer sent us (see
// Incoming). A non-empty thread limits the effect to messages of that thread.
// A marker for an unknown or older message changes nothing, and so does one
// for a group-chat conversation (see TrackOptions.Room).
func (r *Registry[R]) Displayed(bare, full, id, thread string, resp *R) {
	r.g.mu.Lock()
	found := r.byID(id)
	for _, c := range r.peerConvs(bare, full) {
		if c == nil || c.room {
			continue
		}
		named := found
		if named != nil && named.conv() != c {
			named = nil
		}
		if upTo, ok := c.position(named, id); ok {
			c.displayed(named, id, upTo, thread, resp)
		}
	}
	r.unlock()
}

// peerConvs returns the conversations evidence from the sender (bare, full)
// may touch: the one keyed by its bare JID and, for a sender with a
// resource, the private one keyed by its full JID. Either may be nil.
func (r *Registry[R]) peerConvs(bare, full string) [2]*conversation[R] {
	var cs [2]*conversation[R]
	if c := r.convs[bare]; c != nil && !c.full {
		cs[0] = c
	}
	if full != "" && r.nfull > 0 {
		if c := r.convs[full]; c != nil && c.full {
			cs[1] = c
		}
	}
	return cs
}

// Incoming records a message the sender (bare, full) sent us, so that a later marker
// naming it covers our messages sent before it (the usual case in 1:1 chats:
// the peer marks the newest message it displayed, which may be its own). Only
// the most recent few ids of a conversation with pending messages are kept.
func (r *Registry[R]) Incoming(bare, full, id string) {
	if id == "" {
		return
	}
	r.g.mu.Lock()
	for _, c := range r.peerConvs(bare, full) {
		if c != nil && !c.room {
			c.remember(id)
		}
	}
	r.g.mu.Unlock()
}

// Written records that the message id of conversation conv was written to
// the stream, in wire order: it takes the next position of the conversation,
// after every message written (or received, see Incoming) before it, so
// that a displayed marker covers exactly the messages the peer could have
// received before the marked one. A message written again (after a
// reconnection) moves again. Messages never reported keep the position of
// their registration. It ignores group-chat conversations (see
// TrackOptions.Room). It takes only the registry's lock, never writes, and
// queues no callback: it may run inside the writer's output lock.
func (r *Registry[R]) Written(conv, id string) {
	r.g.mu.Lock()
	if t := r.lookup(conv, id); t != nil {
		if c := t.conv(); !c.room {
			c.written(t)
		}
	}
	r.g.mu.Unlock()
}

// ErrorReply records an error reply for the message id: Error, with resp.Err
// as the reason. It counts only when from is the message's recipient (any
// resource, except for a group chat: the room's bare JID only, not an
// occupant), the recipient's domain, or empty (our own server); mellium
// reports our own bare JID as empty too.
func (r *Registry[R]) ErrorReply(from jid.JID, id string, resp *R) {
	r.g.mu.Lock()
	if t := r.byID(id); t != nil && errorFromPeer(from, t.conv()) {
		t.transition(Error, resp)
	}
	r.unlock()
}

// errorFromPeer reports whether from may answer for conversation c: its
// peer (any resource of a bare-JID peer; exactly the full JID of a private
// conversation), the peer's bare JID without a resource (the account's
// server, or a room itself), the peer's domain, or our own server. In a
// group chat (room) every occupant's address has the room's bare JID: only
// the room itself, without a resource, speaks for the room. In a private
// conversation with an occupant, the room and that occupant speak, never
// another occupant.
func errorFromPeer[R any](from jid.JID, c *conversation[R]) bool {
	if from.Equal(jid.JID{}) {
		return true
	}
	peer, err := jid.Parse(c.jid)
	if err != nil {
		return false
	}
	if from.Bare().Equal(peer.Bare()) {
		switch {
		case from.Resourcepart() == "":
			return true
		case c.full:
			return from.Equal(peer)
		default:
			return !c.room
		}
	}
	return from.Localpart() == "" && from.Resourcepart() == "" && peer.Domainpart() == from.Domainpart()
}

// Close stops tracking everything: pending trackers become Closed, or keep
// DeliveredToRecipient or Error, per the transition table. Later Track calls
// fail with ErrShutdown.
func (r *Registry[R]) Close() {
	r.g.mu.Lock()
	r.stop()
	for _, t := range r.byNum.ts {
		t.transition(Closed, nil)
	}
	r.g.closed = true // the callback goroutine ends once these callbacks ran
	r.unlock()
}

// Shutdown stops accepting new messages and waits until every pending tracker
// has settled or ctx ends; it then returns ctx.Err() and tracking goes on.
func (r *Registry[R]) Shutdown(ctx context.Context) error {
	r.g.mu.Lock()
	r.stop()
	if r.pending == 0 {
		r.g.mu.Unlock()
		return nil
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	idle := r.idle
	r.g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop refuses new messages and wakes Track waiters. The caller holds the lock.
func (r *Registry[R]) stop() {
	r.shut = true
	if r.room != nil {
		close(r.room)
		r.room = nil
	}
}

// Hold makes the registry queue state changes without waking its callback
// goroutine until Release: for the goroutine that reads the stream, while
// it works through input it has already read, so that a burst of evidence
// costs one wake-up of the callbacks instead of one per change. Callbacks
// still never run on the caller's goroutine. Call Release before waiting
// for more input; a Release that does not come delays callbacks by at most
// about a second (two linger periods), never loses them.
func (r *Registry[R]) Hold() { r.g.holding.Store(true) }

// Release ends Hold and wakes the callback goroutine for the changes
// queued meanwhile. It is cheap when nothing is held.
func (r *Registry[R]) Release() {
	if r.g.holding.Load() {
		r.g.release()
	}
}

package gateway

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/xmpptrack/xmpptrack/tracking"
)

var (
	errNotFound      = errors.New("gateway: no such message")
	errCursorFuture  = errors.New("gateway: cursor from the future")
	errCursorExpired = errors.New("gateway: cursor older than the changes kept")
	errIdemMismatch  = errors.New("gateway: idempotency key reused with another request")
	// errKeyGone: the in-memory record keeps an idempotency key for its
	// whole lifetime but its message only among the newest MaxMessages; a
	// retry under a key whose message was dropped is refused, since
	// sending it again could send it twice, and a replay has nothing
	// true to answer with.
	errKeyGone = errors.New("gateway: the message of this idempotency key is no longer kept")
)

// record is what the gateway keeps about messages: their status and history,
// the feed of changes with cursors, and idempotency keys. The in-memory
// record below is the default; a durable one sits on a store.
type record interface {
	// create stores a new message, st (its History empty), in IN_TRANSIT
	// since st.Created: the in-memory record keeps it with that first
	// change; the store's keeps nothing (its clients record their
	// messages). With a non-empty key already used by the same scope, it
	// returns the message stored then and created false (errIdemMismatch
	// if the request hash differs; errKeyGone, with out.ID the key's
	// message, if the record no longer keeps it). st and out are values, so that the
	// store's record costs the caller no allocation.
	create(ctx context.Context, st Status, key string, hash [32]byte) (out Status, created bool, err error)
	// change appends a change to a message's history and to the feed.
	change(ctx context.Context, id string, c Change) (Event, error)
	// settle records the final change of a message that no client tracks
	// (a send that failed before it was tracked, a cancelled or unscheduled
	// message); st is its status as accepted. With a store, an id recorded
	// already (another request with the same Idempotency-Key sent it)
	// fails with store.ErrExists and changes nothing.
	settle(ctx context.Context, st *Status, c Change) (Event, error)
	// status returns a copy of a message's record, or errNotFound.
	status(ctx context.Context, id string) (*Status, error)
	// changes returns up to limit events after a cursor whose channel is in
	// channels (all if empty), and the cursor to ask from next time. It
	// may stop short of the head with fewer events, none even (the
	// in-memory record visits at most maxScan changes per call): only an
	// empty page whose cursor is the head says that nothing is left.
	changes(ctx context.Context, after Cursor, channels []string, limit int) ([]Event, Cursor, error)
	// head returns the newest cursor (0 when the feed is empty).
	head(ctx context.Context) (Cursor, error)
	// wait returns when the head is past after, or ctx ends.
	wait(ctx context.Context, after Cursor) error
	// ping checks that the record is reachable.
	ping(ctx context.Context) error
}

// memRecord is a record in memory: it is lost with the process. It keeps the
// newest maxMsgs messages and maxEvents changes.
type memRecord struct {
	mu        sync.Mutex
	msgs      map[string]*Status
	order     []string // ids, oldest first
	keys      map[string]idem
	feed      []feedRef // oldest first
	last      Cursor
	notify    chan struct{} // closed at the next change; nil while nobody waits
	maxMsgs   int
	maxEvents int
	keyTTL    time.Duration
	now       func() time.Time
}

// maxScan bounds the changes one call of memRecord.changes visits, under
// the record's one lock, which every send and state change waits for: a
// channel filter that matches little makes a follower call again from
// where the scan stopped, rather than hold the lock while it walks up to
// MaxEvents changes (BenchmarkFilteredFeedPage, a filter matching none of
// a million changes, on a shared two-core machine: 96 to 137 ms a call
// unbounded, 46 to 89 µs with maxScan). A follower's read of the whole
// feed costs the same in all; others get the lock between its calls. It
// is above maxLimit, so that an unfiltered page is never cut short.
const maxScan = 4096

// feedRef is a change in the feed: the i-th entry of a message's history.
// The feed holds references rather than copies of the events (an Event is
// ten times its size); a message's history only grows, and is read and
// appended under the record's lock.
type feedRef struct {
	s *Status
	i int
}

func (f feedRef) event() Event {
	return Event{ID: f.s.ID, To: f.s.To, Channel: f.s.Channel, Change: f.s.History[f.i]}
}

type idem struct {
	id   string
	hash [32]byte
	at   time.Time
}

func newMemRecord(maxMsgs, maxEvents int) *memRecord {
	return &memRecord{
		msgs:      make(map[string]*Status),
		keys:      make(map[string]idem),
		maxMsgs:   maxMsgs,
		maxEvents: maxEvents,
		keyTTL:    24 * time.Hour,
		now:       time.Now,
	}
}

func (m *memRecord) create(_ context.Context, st Status, key string, hash [32]byte) (Status, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if key != "" {
		if k, ok := m.keys[key]; ok && m.now().Sub(k.at) < m.keyTTL {
			if k.hash != hash {
				return Status{}, false, errIdemMismatch
			}
			old, ok := m.msgs[k.id]
			if !ok {
				return Status{ID: k.id}, false, errKeyGone
			}
			return copyStatusValue(old), false, nil
		}
	}
	if _, dup := m.msgs[st.ID]; dup {
		return Status{}, false, tracking.ErrDuplicateID
	}
	s := new(Status)
	*s = st
	s.raw = nil
	// Room for the server's ack without growing: most messages have at
	// least two changes.
	s.History = make([]Change, 0, 2)
	m.msgs[s.ID] = s
	m.order = append(m.order, s.ID)
	if key != "" {
		m.keys[key] = idem{id: s.ID, hash: hash, at: m.now()}
	}
	m.appendLocked(s, Change{State: State(tracking.InTransit), At: st.Created})
	m.pruneLocked()
	// A shallow copy whose history is its first change, which never
	// changes (callers read none of it).
	out := *s
	out.History = s.History[:1:1]
	return out, true, nil
}

func (m *memRecord) appendLocked(s *Status, c Change) Event {
	m.last++
	c.Cursor = m.last
	s.History = append(s.History, c)
	s.State = c.State
	s.Cursor = c.Cursor
	if tracking.MessageState(c.State).IsFinal() {
		s.Settled = true
	}
	ref := feedRef{s: s, i: len(s.History) - 1}
	m.feed = append(m.feed, ref)
	if m.notify != nil {
		close(m.notify)
		m.notify = nil
	}
	return ref.event()
}

func (m *memRecord) pruneLocked() {
	if n := len(m.feed) - m.maxEvents; n > 0 {
		n = max(n, m.maxEvents/8) // trim in batches
		m.feed = slices.Delete(m.feed, 0, min(n, len(m.feed)))
	}
	if n := len(m.order) - m.maxMsgs; n > 0 {
		n = max(n, m.maxMsgs/8)
		n = min(n, len(m.order))
		for _, id := range m.order[:n] {
			delete(m.msgs, id)
		}
		m.order = slices.Delete(m.order, 0, n)
		now := m.now()
		for k, v := range m.keys {
			if now.Sub(v.at) >= m.keyTTL {
				delete(m.keys, k)
			}
		}
	}
}

func (m *memRecord) change(_ context.Context, id string, c Change) (Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.msgs[id]
	if !ok {
		return Event{}, errNotFound
	}
	ev := m.appendLocked(s, c)
	m.pruneLocked()
	return ev, nil
}

func (m *memRecord) settle(ctx context.Context, st *Status, c Change) (Event, error) {
	return m.change(ctx, st.ID, c)
}

func (m *memRecord) status(_ context.Context, id string) (*Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.msgs[id]
	if !ok {
		return nil, errNotFound
	}
	return copyStatus(s), nil
}

func (m *memRecord) changes(_ context.Context, after Cursor, channels []string, limit int) ([]Event, Cursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after > m.last {
		return nil, after, errCursorFuture
	}
	if len(m.feed) == 0 {
		return nil, after, nil
	}
	first := m.feed[0].event().Cursor
	if after != 0 && after+1 < first {
		return nil, after, errCursorExpired
	}
	// Cursors in the feed are consecutive.
	i := 0
	if after >= first {
		i = int(after - first + 1)
	}
	var out []Event
	next := after
	for end := min(len(m.feed), i+maxScan); i < end && len(out) < limit; i++ {
		ev := m.feed[i].event()
		next = ev.Cursor
		if len(channels) == 0 || slices.Contains(channels, ev.Channel) {
			ev.SeenBy = slices.Clone(ev.SeenBy)
			out = append(out, ev)
		}
	}
	return out, next, nil
}

func (m *memRecord) head(context.Context) (Cursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, nil
}

func (m *memRecord) wait(ctx context.Context, after Cursor) error {
	m.mu.Lock()
	if m.last > after {
		m.mu.Unlock()
		return nil
	}
	if m.notify == nil {
		m.notify = make(chan struct{})
	}
	ch := m.notify
	m.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *memRecord) ping(context.Context) error { return nil }

func copyStatus(s *Status) *Status {
	c := copyStatusValue(s)
	return &c
}

// copyStatusValue is copyStatus as a value.
func copyStatusValue(s *Status) Status {
	c := *s
	c.History = slices.Clone(s.History)
	if s.SendAt != nil {
		t := *s.SendAt
		c.SendAt = &t
	}
	return c
}

package xmpptrack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// doubtKeep bounds how long the client remembers a message Send reported
// ErrRecordUncertain for (see ErrRecordUncertain): while the store has no
// record of it, until its window ends (but at least doubtGrace) and at
// most doubtKeep after Send gave up on it; and doubtKeep after the client
// resolved it (sent it, or found its record settled), so that a retry
// still gets its tracker or ErrRecordSettled.
const doubtKeep = 5 * time.Minute

// doubtGrace is how long the client keeps a message in doubt at least, also
// one whose window ended: a commit whose outcome was unknown usually lands,
// if at all, within moments, and then its record is settled here rather
// than left pending for the next Dial.
const doubtGrace = time.Minute

// maxDoubts bounds the number of messages in doubt the client keeps (a
// store that hangs while Sends end makes one per Send): beyond it, a
// message Send reports ErrRecordUncertain for is left to the next Dial, as
// one the client forgot (see ErrRecordUncertain).
const maxDoubts = 10000

// doubt is a message Send reported ErrRecordUncertain for: the store may
// hold it, unsent.
type doubt struct {
	sm      store.Message  // as written ahead last
	created []time.Time    // the Created of each write-ahead in doubt: any one may land
	msg     Message        // what Send was given, to send it (see resolveDoubts)
	payload *tokbuf.Buffer // its payload
	mucUser bool           // Send added the muc#user <x/> to it (see Client.addsMUCUser)
	until   time.Time      // when the client forgets it
	// resolved: the client sent it, or found its record settled; a retry
	// gets its tracker or ErrRecordSettled.
	resolved bool
	// heard: the application heard its TIMED_OUT already (Send's tracker
	// ended so before Send gave up).
	heard bool
	// next is when the resolver looks at it next (it backs off while the
	// store does not have it); wait is the last wait.
	next time.Time
	wait time.Duration
	// owed is the stored message whose TIMED_OUT the client recorded but
	// could not report yet (no pending slot): reported on a later round.
	owed *store.Message
	drop bool          // forget it once released
	busy chan struct{} // while a Send or the resolver works on it; closed when done
}

// hold is a Send's or the resolver's hold on a message in doubt (see
// claim): only the holder's release lets it go. Every field of a doubt is
// read and written under d.mu.
type hold struct {
	id  string
	e   *doubt
	tok chan struct{} // e.busy while held; nil once released, or if never held
	// adopted, set by adopt, is the record of an earlier write-ahead that
	// the retry found stored and unsent: it is tracked for the rest of the
	// record's window.
	adopted *store.Message
	// mucUser: this Send adds the muc#user <x/> (see Client.addsMUCUser).
	mucUser bool
}

// inDoubt settles a write-ahead whose commit failed with
// store.ErrOutcomeUnknown (err): nil when the message is stored, an error
// matching store.ErrExists when another record holds its id, one matching
// ErrRecordSettled when its own record is settled already, else, once ctx
// ended or the message's window did (or the client closed, or the store
// did) with the store still failing, ErrRecordUncertain (see there for the
// rules). It then keeps the message as in doubt, held in h for the caller,
// who releases it.
func (d *durable) inDoubt(ctx context.Context, m store.Message, msg Message, payload *tokbuf.Buffer, err error, h *hold) error {
	wctx := ctx
	if !m.Deadline.IsZero() {
		var cancel context.CancelFunc
		wctx, cancel = context.WithDeadline(ctx, m.Deadline)
		defer cancel()
	}
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, recorderRetry) {
		// Commit it again. The id is unique: the database makes this
		// insert wait for a first one still in progress, or makes a late
		// first one fail, so that at most one lands.
		again := m
		cerr := d.st.Commit(wctx, &store.Batch{Messages: []store.Message{again}})
		if cerr == nil || errors.Is(cerr, store.ErrCursorsUnknown) {
			return nil // stored now
		}
		rec, rerr := d.st.Message(wctx, m.ID)
		switch {
		case rerr == nil && d.isThis(rec, m) && sameCreated(rec.Created, m.Created):
			return nil
		case rerr == nil && d.isThis(rec, m):
			// An earlier write-ahead of this message (a retry's) landed: the
			// caller's adopt decides.
			return fmt.Errorf("%w (an earlier write-ahead of this message)", store.ErrExists)
		case rerr == nil && d.mine(rec, m.To, []time.Time{m.Created}):
			return settledError(rec) // its window ended meanwhile
		case rerr == nil:
			// Another message's record: ours cannot have been stored.
			return fmt.Errorf("%w (an earlier record has this id)", store.ErrExists)
		case errors.Is(cerr, store.ErrClosed):
		default:
			select {
			case <-time.After(wait):
				continue
			case <-wctx.Done():
			case <-d.stop:
			}
		}
		break
	}
	ended := ctx.Err() == nil && wctx.Err() != nil
	d.doubted(m, msg, payload, h)
	return &UncertainError{ID: m.ID, Err: err, windowEnded: ended}
}

// doubted keeps m as in doubt, held in h for the Send that reports it: a
// new entry, or the one h holds already (a retry's), which gets m's
// write-ahead too. An entry someone else holds (another Send with the id)
// only notes m's creation time, so that its record is known as ours.
func (d *durable) doubted(m store.Message, msg Message, payload *tokbuf.Buffer, h *hold) {
	now := time.Now()
	until := now.Add(doubtKeep)
	if !m.Deadline.IsZero() && m.Deadline.Before(until) {
		until = maxTime(m.Deadline, now.Add(doubtGrace))
	}
	full := false
	defer func() {
		if full { // logged outside d.mu, as every warning
			d.warn("xmpptrack: too many messages in doubt; the next ones are left to the next Dial", "id", m.ID, "max", maxDoubts)
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unsure == nil {
		d.unsure = map[string]*doubt{}
	}
	e := d.unsure[m.ID]
	if e == nil {
		if len(d.unsure) >= maxDoubts {
			full = !d.doubtsFull // logged once until there is room again
			d.doubtsFull = true
			return
		}
		d.doubtsFull = false
		e = &doubt{}
		d.unsure[m.ID] = e
	}
	e.created = append(e.created, m.Created)
	e.until = maxTime(e.until, until)
	d.resolveAt = time.Time{} // look at it soon
	switch {
	case e.busy == nil:
		e.busy = make(chan struct{})
		h.id, h.e, h.tok = m.ID, e, e.busy
	case e.busy != h.tok:
		return // someone else works on it
	}
	e.sm, e.msg, e.payload, e.mucUser = m, msg, payload, h.mucUser
	e.resolved = false
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// claim waits until no other Send nor the resolver works on the message
// with the id that Send reported ErrRecordUncertain for, and holds it in h
// for the caller, who releases it; h.e stays nil if the client keeps no
// such message.
func (d *durable) claim(ctx context.Context, h *hold) error {
	for {
		d.mu.Lock()
		e := d.unsure[h.id]
		if e == nil {
			d.mu.Unlock()
			return nil
		}
		busy := e.busy
		if busy == nil {
			e.busy = make(chan struct{})
			h.e, h.tok = e, e.busy
			d.mu.Unlock()
			return nil
		}
		d.mu.Unlock()
		if hook := d.claimHook.Load(); hook != nil {
			(*hook)()
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tryClaim is claim without waiting: nil when the entry is held or gone.
func (d *durable) tryClaim(id string) *hold {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.unsure[id]
	if e == nil || e.busy != nil {
		return nil
	}
	e.busy = make(chan struct{})
	return &hold{id: id, e: e, tok: e.busy}
}

// release lets go of the message in doubt that h holds, if it still holds
// it (a second release does nothing), and forgets it if it is to be
// dropped.
func (d *durable) release(h *hold) {
	if h.tok == nil { // (h is its holder's own: no lock needed)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	tok := h.tok
	h.tok = nil
	e := d.unsure[h.id]
	if e == nil || e.busy != tok {
		return
	}
	close(e.busy)
	e.busy = nil
	if e.drop {
		d.forget(h.id)
	}
}

// isResolved reports whether the held message in doubt is resolved (see
// doubt.resolved).
func (d *durable) isResolved(e *doubt) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return e.resolved
}

// dropped marks a held message in doubt to be forgotten once released.
func (d *durable) dropped(e *doubt) {
	d.mu.Lock()
	e.drop = true
	d.mu.Unlock()
}

// forget drops the entry of id; d.mu is held.
func (d *durable) forget(id string) {
	delete(d.unsure, id)
	if len(d.unsure) == 0 {
		d.unsure = nil // let the map's memory go
	}
}

// resolved marks a held message in doubt as resolved: sent, or settled.
// Only its stanza stays, for a retry to compare.
func (d *durable) resolved(e *doubt) {
	d.mu.Lock()
	e.resolved = true
	e.until = time.Now().Add(doubtKeep)
	e.msg, e.payload = Message{}, nil
	d.mu.Unlock()
}

// UncertainError is the error Send returns with ErrRecordUncertain
// (errors.Is matches it): it names the message's id, also one that Send
// made up for a Message without one, so that a retry can use it.
type UncertainError struct {
	ID  string // the message's id: retry Send with it and the same message
	Err error  // the store's error

	windowEnded bool
}

func (e *UncertainError) Error() string {
	if e.windowEnded {
		return fmt.Sprintf("%v (message id %q; its tracking window ended first): %v", ErrRecordUncertain, e.ID, e.Err)
	}
	return fmt.Sprintf("%v (message id %q): %v", ErrRecordUncertain, e.ID, e.Err)
}

// Is reports whether target is ErrRecordUncertain, or tracking.ErrTimedOut
// when the message's tracking window ended before the store answered.
func (e *UncertainError) Is(target error) bool {
	return target == ErrRecordUncertain || e.windowEnded && target == tracking.ErrTimedOut
}

// Unwrap returns the store's error.
func (e *UncertainError) Unwrap() error { return e.Err }

// ErrRecordSettled: Send was given a message it had reported
// ErrRecordUncertain for (a retry with the same id and message), or a
// first Send's write-ahead in doubt read back its own record (see
// ErrRecordUncertain), and the store's record of it is settled: its window
// ended before it was sent (TIMED_OUT: the error then matches
// tracking.ErrTimedOut too), or the client sent it meanwhile and its
// tracking ended. The error names the state; Client.Status has the
// history. This Send sent nothing; the state tells whether the message
// went out earlier (one that ended TIMED_OUT or ABORTED did not reach the
// recipient: send it again under a new id if it is still wanted).
var ErrRecordSettled = errors.New("xmpptrack: the message is recorded as settled; nothing was sent")

// settledErr is the error matching ErrRecordSettled.
type settledErr struct {
	id    string
	state tracking.MessageState
}

func (e *settledErr) Error() string {
	return fmt.Sprintf("%v (message id %q, %v)", ErrRecordSettled, e.id, e.state)
}

// Is reports whether target is ErrRecordSettled, or tracking.ErrTimedOut
// for a record settled TIMED_OUT.
func (e *settledErr) Is(target error) bool {
	return target == ErrRecordSettled || e.state == tracking.TimedOut && target == tracking.ErrTimedOut
}

func settledError(rec store.Record) error {
	return &settledErr{id: rec.ID, state: rec.State}
}

// isThis reports whether rec is the record of m as Send wrote it ahead,
// still pending, untouched and unsent: same owner, same stanza,
// IN_TRANSIT.
func (d *durable) isThis(rec store.Record, m store.Message) bool {
	return rec.Owner == d.owner && !rec.Settled && rec.State == tracking.InTransit && !rec.Written &&
		bytes.Equal(rec.Raw, m.Raw)
}

// mine reports whether rec is the record of a message to `to` that one of
// this owner's write-aheads created at one of the times created, in
// whatever state: a settled record has no stanza left to compare, and a
// record of an earlier message that used the id was created earlier.
func (d *durable) mine(rec store.Record, to string, created []time.Time) bool {
	if rec.Owner != d.owner || rec.To != to {
		return false
	}
	for _, c := range created {
		if sameCreated(rec.Created, c) {
			return true
		}
	}
	return false
}

// sameCreated reports whether a record's creation time is the one its
// write-ahead gave, at the precision the store contract promises: a
// millisecond (see store.Message.Created; a store may truncate or round).
// (Checking microseconds would make a conforming store that keeps
// milliseconds never match.) The record of another message with the same
// id, owner and recipient created within that millisecond is not a
// collision that happens; two write-aheads of one message that close
// together are both this message's.
func sameCreated(stored, given time.Time) bool {
	d := stored.Sub(given)
	return d >= -time.Millisecond && d <= time.Millisecond
}

// adopt decides, for a retry that holds h (see claim), what to do with m
// whose id the store holds: true when the record is the message stored
// after all (an earlier write-ahead landed late) and its window lasts:
// h.adopted is then the record, which this Send tracks for the rest of its
// window and sends; else the error to return (false, nil: another
// message's record). A record whose window ended is recorded TIMED_OUT,
// stamped with its deadline, as resolveDoubts does, and its TIMED_OUT
// reported unless the application heard it (see reportOwed); the error
// then matches ErrRecordSettled and tracking.ErrTimedOut. A record that
// cannot be read leaves the message in doubt: the error matches
// ErrRecordUncertain.
func (d *durable) adopt(ctx context.Context, h *hold, m store.Message) (bool, error) {
	e := h.e
	d.mu.Lock()
	raw, created := e.sm.Raw, slices.Clone(e.created)
	d.mu.Unlock()
	if !bytes.Equal(m.Raw, raw) {
		return false, nil // another message with the id is refused
	}
	rec, err := d.st.Message(ctx, m.ID)
	switch {
	case err != nil:
		return false, &UncertainError{ID: m.ID, Err: fmt.Errorf("its id is in the store, whose record could not be read: %w", err)}
	case d.isThis(rec, m) && windowEnded(rec.Message, time.Now()):
		d.timedOut(e, rec.Message)
		return false, &settledErr{id: m.ID, state: tracking.TimedOut}
	case d.isThis(rec, m):
		stored := rec.Message
		h.adopted = &stored
		d.failed(nil)
		return true, nil
	case d.mine(rec, m.To, created):
		d.resolved(e)
		return false, settledError(rec)
	}
	// Another message's record: ours can no longer land.
	d.dropped(e)
	return false, nil
}

// trackAdopted tracks a message a retry found stored (see adopt) for the
// rest of its stored window.
func (c *Client) trackAdopted(ctx context.Context, m store.Message) (*tracking.MessageTracker, error) {
	window := time.Duration(-1)
	if !m.Deadline.IsZero() {
		window = max(time.Until(m.Deadline), time.Millisecond) // ended meanwhile: it times out at once
	}
	t, err := c.reg.Track(ctx, registry.ConvOf(m.To), m.ID, registry.TrackOptions{Window: window, Thread: m.Thread, Room: m.Room})
	if errors.Is(err, registry.ErrShutdown) {
		err = ErrClientClosed
	}
	return t, err
}

// resolvedAs marks a held message in doubt as resolved by m, the
// write-ahead of a retry that stored it.
func (d *durable) resolvedAs(e *doubt, m store.Message) {
	d.mu.Lock()
	e.sm = m
	e.created = append(e.created, m.Created)
	d.mu.Unlock()
	d.resolved(e)
}

// timedOut settles the held message in doubt e, whose stored record m is
// this message and whose window ended: it records TIMED_OUT, stamped with
// the deadline, and owes the application that report unless it heard it
// (see reportOwed).
func (d *durable) timedOut(e *doubt, m store.Message) {
	d.record(m.ID, tracking.TimedOut, m.Deadline, nil)
	d.mu.Lock()
	if !e.heard {
		e.owed = &m
	}
	d.mu.Unlock()
	d.resolved(e)
}

// reportOwed tells the application of the TIMED_OUT the client recorded
// for the held message in doubt e, if it owes that report (see
// doubt.owed); at the MaxPending bound it stays owed, for a later round.
func (c *Client) reportOwed(e *doubt) {
	d := c.dur
	d.mu.Lock()
	m := e.owed
	e.owed = nil
	d.mu.Unlock()
	if m == nil {
		return
	}
	if err := c.expire(*m, false); err != nil && !errors.Is(err, registry.ErrShutdown) {
		c.log.Debug("xmpptrack: the TIMED_OUT of a message in doubt cannot be reported yet", "id", m.ID, "err", err)
		d.mu.Lock()
		e.owed = m
		d.mu.Unlock()
	}
}

// gaveUp is told of the tracker of a message Send gave up on after it
// called Lost: a tracker that had ended on its own (its window, TIMED_OUT,
// reported to the application) leaves no stale restoring entry, and its
// message in doubt, if any, is noted as heard of.
func (d *durable) gaveUp(t *tracking.MessageTracker) {
	st := t.State()
	if st == tracking.Aborted {
		return
	}
	id := t.ID()
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.restored[id]; ok && r.to == tracking.Aborted {
		d.unrestore(id)
	}
	if e := d.unsure[id]; e != nil && st == tracking.TimedOut {
		e.heard = true
	}
}

// retryResolved answers a retry of Send for a message in doubt that the
// client resolved already (held, see claim): its tracker while it is
// pending, else ErrRecordSettled; tracking.ErrDuplicateID for another
// message with its id; the store's or ctx's error if the record cannot be
// read.
func (c *Client) retryResolved(ctx context.Context, e *doubt, m Message, payload *tokbuf.Buffer) (*tracking.MessageTracker, error) {
	raw, err := encodeMessage(m.ID, m, payload)
	if err != nil {
		return nil, fmt.Errorf("xmpptrack: encoding the message for the store: %w", err)
	}
	c.dur.mu.Lock()
	stored := e.sm.Raw
	c.dur.mu.Unlock()
	if !bytes.Equal(raw, stored) {
		return nil, fmt.Errorf("xmpptrack: message id %q is in the store: %w", m.ID, tracking.ErrDuplicateID)
	}
	if t := c.reg.Find(m.ID); t != nil {
		return t, nil
	}
	err = c.dur.flush(ctx) // the record has this process's changes
	var rec store.Record
	if err == nil {
		rec, err = c.dur.st.Message(ctx, m.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("xmpptrack: message id %q was sent or settled already; reading its record: %w", m.ID, err)
	}
	return nil, settledError(rec)
}

package xmpptrack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

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
	drop bool          // forget it once released
	busy chan struct{} // while a Send or the resolver works on it; closed when done
}

// inDoubt settles a write-ahead whose commit failed with
// store.ErrOutcomeUnknown (err): nil when the message is stored, an error
// matching store.ErrExists when another record holds its id, one matching
// ErrRecordSettled when its own record is settled already, else, once ctx
// ended or the message's window did (or the client closed, or the store
// did) with the store still failing, ErrRecordUncertain (see there for the
// rules). It then keeps the message as in doubt, held for the caller, who
// releases it.
func (d *durable) inDoubt(ctx context.Context, m store.Message, msg Message, payload *tokbuf.Buffer, err error) error {
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
		case rerr == nil && d.isThis(rec, m):
			return nil
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
	d.doubted(m, msg, payload)
	return &UncertainError{ID: m.ID, Err: err, windowEnded: ended}
}

// doubted keeps m as in doubt, held (busy) for the Send that reports it:
// a new entry, or the one a retry holds, which gets m's write-ahead too.
func (d *durable) doubted(m store.Message, msg Message, payload *tokbuf.Buffer) {
	now := time.Now()
	until := now.Add(doubtKeep)
	if !m.Deadline.IsZero() && m.Deadline.Before(until) {
		until = maxTime(m.Deadline, now.Add(doubtGrace))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.unsure == nil {
		d.unsure = map[string]*doubt{}
	}
	e := d.unsure[m.ID]
	if e == nil {
		if len(d.unsure) >= maxDoubts {
			if !d.doubtsFull {
				d.doubtsFull = true // logged once until there is room again
				d.warn("xmpptrack: too many messages in doubt; the next ones are left to the next Dial", "id", m.ID, "max", maxDoubts)
			}
			return
		}
		d.doubtsFull = false
		e = &doubt{}
		d.unsure[m.ID] = e
	}
	if e.busy == nil {
		e.busy = make(chan struct{})
	}
	e.sm, e.msg, e.payload = m, msg, payload
	e.created = append(e.created, m.Created)
	e.until = maxTime(e.until, until)
	e.resolved = false
	d.resolveAt = time.Time{} // look at it soon
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// claim waits until no other Send nor the resolver works on the message
// with the id that Send reported ErrRecordUncertain for, and holds it for
// the caller, who releases it; nil if the client keeps no such message.
func (d *durable) claim(ctx context.Context, id string) (*doubt, error) {
	for {
		d.mu.Lock()
		e := d.unsure[id]
		if e == nil {
			d.mu.Unlock()
			return nil, nil
		}
		busy := e.busy
		if busy == nil {
			e.busy = make(chan struct{})
			d.mu.Unlock()
			return e, nil
		}
		d.mu.Unlock()
		if hook := d.claimHook.Load(); hook != nil {
			(*hook)()
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tryClaim is claim without waiting: nil when the entry is held or gone.
func (d *durable) tryClaim(id string) *doubt {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.unsure[id]
	if e == nil || e.busy != nil {
		return nil
	}
	e.busy = make(chan struct{})
	return e
}

// release lets go of the message in doubt with the id, if held, and
// forgets it if it is to be dropped.
func (d *durable) release(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.unsure[id]
	if e == nil || e.busy == nil {
		return
	}
	close(e.busy)
	e.busy = nil
	if e.drop {
		d.forget(id)
	}
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

// ErrRecordSettled: Send was retried for a message it had reported
// ErrRecordUncertain for (the same id and message), and the store's record
// of it is settled: its window ended before it was sent (TIMED_OUT), or the
// client sent it meanwhile and its tracking ended (see ErrRecordUncertain).
// The error names the state; Client.Status has the history. This Send
// sent nothing; the state tells whether the message went out earlier (one
// that ended TIMED_OUT or ABORTED did not reach the recipient: send it
// again under a new id if it is still wanted).
var ErrRecordSettled = errors.New("xmpptrack: the message Send was retried for is recorded as settled; nothing was sent")

func settledError(rec store.Record) error {
	return fmt.Errorf("%w (message id %q, %v)", ErrRecordSettled, rec.ID, rec.State)
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
// record of an earlier message that used the id was created earlier. (The
// stores keep microseconds.)
func (d *durable) mine(rec store.Record, to string, created []time.Time) bool {
	if rec.Owner != d.owner || rec.To != to {
		return false
	}
	for _, c := range created {
		if d := rec.Created.Truncate(time.Microsecond).Sub(c.Truncate(time.Microsecond)); d >= -time.Microsecond && d <= time.Microsecond {
			return true // (a store may round)
		}
	}
	return false
}

// adopt decides, for a retry that holds e (see claim), what to do with m
// whose id the store holds: true when the record is the message stored
// after all (its commit landed late): this Send then sends it; else the
// error to return.
func (d *durable) adopt(ctx context.Context, e *doubt, m store.Message) (bool, error) {
	rec, err := d.st.Message(ctx, m.ID)
	switch {
	case err != nil, !bytes.Equal(m.Raw, e.sm.Raw):
		return false, nil // another message with the id is refused
	case d.isThis(rec, m):
		d.resolved(e)
		d.failed(nil)
		return true, nil
	case d.mine(rec, m.To, e.created):
		d.resolved(e)
		return false, settledError(rec)
	}
	// Another message's record: ours can no longer land.
	d.mu.Lock()
	e.drop = true
	d.mu.Unlock()
	return false, nil
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

// gaveUp is told of the tracker of a message Send gave up on after it
// called Lost: a tracker that had ended on its own (its window, TIMED_OUT,
// reported to the application) leaves no stale restoring entry, and its
// message in doubt, if any, is noted as heard of.
func (d *durable) gaveUp(t *tracking.MessageTracker) {
	st := t.State()
	if st == tracking.Aborted {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.restored[t.ID()]; ok && r.to == tracking.Aborted {
		delete(d.restored, t.ID())
		if len(d.restored) == 0 {
			d.restored = nil
		}
	}
	if e := d.unsure[t.ID()]; e != nil && st == tracking.TimedOut {
		e.heard = true
	}
}

// retryResolved answers a retry of Send for a message in doubt that the
// client resolved already (held, see claim): its tracker while it is
// pending, else ErrRecordSettled; tracking.ErrDuplicateID for another
// message with its id.
func (c *Client) retryResolved(ctx context.Context, e *doubt, m Message, payload *tokbuf.Buffer) (*tracking.MessageTracker, error) {
	raw, err := encodeMessage(m.ID, m, payload)
	if err != nil {
		return nil, fmt.Errorf("xmpptrack: encoding the message for the store: %w", err)
	}
	if !bytes.Equal(raw, e.sm.Raw) {
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
		return nil, fmt.Errorf("%w (message id %q; reading its record: %w)", ErrRecordSettled, m.ID, err)
	}
	return nil, settledError(rec)
}

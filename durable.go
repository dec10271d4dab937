package xmpptrack

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// durable is the client's side of Config.Store: the ownership lease, the
// write-ahead of messages, and a recorder that commits state changes in
// the order the trackers made them.
type durable struct {
	st    store.Store
	owner store.Instance
	lease store.Lease
	log   *slog.Logger

	// client is set by Dial once the stream-management state is restored:
	// from then on the recorder saves it.
	client atomic.Pointer[Client]

	// The current connection (gen, counted by newConn) and the inbound
	// stanzas the application finished on it, for the inbound count saved
	// for a resumption (see inbound): gen<<32 | finished, in one word so
	// that a stanza of an old connection is never counted for a new one.
	conn atomic.Uint64

	failure atomic.Pointer[error] // the store's last failure, nil after a success (Stats.StoreErr)

	nums numbers // the message numbers the store keeps, and their stream (see numbers.go)

	// saved is the stream-management state last committed (or restored):
	// what a successor process would claim, and so the bound of the acks
	// we send (see handled).
	saved  atomic.Pointer[store.Session]
	acking atomic.Bool // an unsolicited <a/> is being written (ackSaved)
	// ackHook, when set by a test, runs at the start of each round of the
	// ackSaved worker, before it picks the session to write to.
	ackHook atomic.Pointer[func()]
	// readHook, when set by a test, runs right after the recorder read the
	// stream-management state, before it drains the message numbers.
	readHook atomic.Pointer[func()]
	// takenHook, when set by a test, runs right after the recorder took the
	// queued changes, before it turns them into the store's.
	takenHook atomic.Pointer[func()]
	// finishHook, when set by a test, runs in finish between the reading
	// of the connection and the count.
	finishHook atomic.Pointer[func()]
	// closing is set when Client.Close (or a permanent failure) starts
	// closing the client: the CLOSED changes made from then on are not
	// recorded (see made).
	closing atomic.Bool
	// reporting: Config.OnStateChange is set, and hears of the changes
	// through the hook that hooks returns (set before the registry
	// exists), which takes the notes.
	reporting bool
	// noted counts the entries of notes, read without d.mu by that hook.
	noted atomic.Int64
	// heard counts the changes that hook was called for: the ordinal of
	// each, to match a note's (see unnote).
	heard atomic.Uint64
	// resolveHook, when set by a test, runs at the end of each round of
	// resolveDoubts.
	resolveHook atomic.Pointer[func()]
	// claimHook, when set by a test, runs when a Send waits for a message
	// in doubt that another holds (see claim).
	claimHook atomic.Pointer[func()]
	// trackedHook, when set by a test, runs when resolveDoubts tracked a
	// message in doubt it found stored, before it lets go of it.
	trackedHook atomic.Pointer[func()]
	resolving   atomic.Bool

	mu       sync.Mutex
	restored map[string]restoredState // re-loaded trackers on their way to their stored state
	unsure   map[string]*doubt        // messages Send reported ErrRecordUncertain for (see uncertain.go)
	voided   map[string]bool          // held messages whose stored numbers void committed (see numbers.go)
	// notes are the changes made (and not recorded) that Config.OnStateChange
	// hears of otherwise, or not at all, oldest first (see note).
	notes []note
	// madeN counts the changes made while reporting: the ordinal of the
	// last one (see note).
	madeN uint64
	// resolveAt is when the recorder next starts resolveDoubts; resolving
	// is set while it runs.
	resolveAt time.Time
	// doubtsFull: maxDoubts was reached (logged once until below).
	doubtsFull bool
	// queue holds the changes to record, oldest first; each keeps its
	// tracker until committed. Never waited for, it is bounded by what
	// makes changes: while the store is down writeAhead fails and no new
	// tracker is made (at most the pending trackers' changes queue, and
	// record's of the messages in doubt, at most maxDoubts), and a callback
	// that does not return stops new tracking at the registry's bound. Only
	// a store that takes write-aheads and refuses batches lets it grow
	// with the send rate.
	queue    []queuedChange
	spare    []queuedChange // the array of the queue the recorder took last, empty: the next queue's
	seqs     []numbered     // sequence numbers to record
	last     store.Session  // the stream-management state last saved (recorder only)
	queued   uint64         // changes queued for the recorder so far
	written  uint64         // of those, committed (or given up on)
	asked    uint64         // saveSessionNow calls so far
	answered uint64         // of those, answered: a session taken after them was committed (or given up on)
	progress chan struct{}  // closed and replaced when written moves
	wake     chan struct{}  // capacity 1: the queue is not empty
	hurry    chan struct{}  // capacity 1: flush waits, commit without gathering
	stop     chan struct{}  // closed by close: the recorder ends
	done     chan struct{}  // closed when the recorder ended
	once     sync.Once
	// changes is the array of the changes the recorder committed last,
	// used again for the next batch unless it held more than
	// maxKeptChanges (recorder only; see run).
	changes []store.Change
	// from is the evidence's sender of the last change taken, as a string
	// (recorder only): a conversation's receipts and markers come from
	// one address, made into a string once (see changeOf).
	from fromString
}

// fromString keeps an address and its string.
type fromString struct {
	j jid.JID
	s string
}

// of returns j's string, made again only when j is not the last one.
func (f *fromString) of(j jid.JID) string {
	if f.s == "" || !f.j.Equal(j) {
		f.j, f.s = j, j.String()
	}
	return f.s
}

// queuedChange is a state change on its way to the recorder, which turns
// it into the store's (changeOf) when it commits it: a third of a
// store.Change's size, and the id's and the evidence's strings are made
// on the recorder's goroutine, not under the registry's lock (see made).
type queuedChange struct {
	t    *tracking.MessageTracker // whose ID it is; nil when id is set
	id   string
	to   tracking.MessageState
	at   time.Time
	resp *tracking.Response // immutable once handed to the tracker (see tracking.Response)
}

// note is a change made and not recorded that Config.OnStateChange hears
// of otherwise (stillPending) or not at all (silent). A tracker enters
// each state at most once, so t and to name one change; n is its ordinal
// among the changes made, which the reporting hook counts as it hears of
// them, to tell a note whose change it missed (see unnote).
type note struct {
	t    *tracking.MessageTracker
	to   tracking.MessageState
	kind noteKind
	n    uint64
}

// noteKind says how a noted change is reported.
type noteKind uint8

const (
	reported     noteKind = iota // as made: not noted
	silent                       // not at all: the application heard of it before a restart
	stillPending                 // with a Response whose Err is ErrStillPending
)

// stateHook is the registry's hook on state changes.
type stateHook = func(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response)

// restoredState is the stored state a re-loaded tracker is moved to, and
// whether Config.OnStateChange hears of that move.
type restoredState struct {
	to     tracking.MessageState
	report bool
	// n counts the moves announced and not made yet: two Send calls with
	// one id may each announce the ABORTED of a tracker of theirs before
	// either makes it.
	n int
}

// ErrStillPending is the Err of the Response that Config.OnStateChange gets
// with the CLOSED change of a message that Client.Close stopped tracking
// while it was pending in Config.Store: CLOSED then ends tracking in this
// process only, the store keeps the message pending, and the next Dial on
// the store takes it back.
var ErrStillPending = errors.New("xmpptrack: closed in this process only; the message stays pending in the store for the next Dial")

// ErrLeaseLost is Client.Err (and wrapped by ErrClientClosed) when the
// store's lease of the account was lost while the client ran: another
// process may own the account's record and stream now, so the client
// stopped (see Config.Store).
var ErrLeaseLost = errors.New("xmpptrack: the store's lease of this account was lost; another process may own it now")

// fenced is the store as the client writes to it: once the lease is lost,
// every Commit fails with ErrLeaseLost, whichever goroutine makes it (Send's
// write-ahead, the recorder, a retry), since another process may be the
// owner now.
type fenced struct {
	store.Store
	lost <-chan struct{}
}

func (f fenced) Commit(ctx context.Context, b *store.Batch) error {
	select {
	case <-f.lost:
		return ErrLeaseLost
	default:
	}
	return f.Store.Commit(ctx, b)
}

// ErrNotRecorded: Send could not write the message ahead to Config.Store;
// the error wraps the store's. Nothing was sent and nothing is tracked (Send
// returns a nil tracker); Stats.StoreErr holds the failure until a later
// commit, of a message or of the recorder's changes, succeeds.
var ErrNotRecorded = errors.New("xmpptrack: the store could not record the message, so it was not sent")

// ErrRecordUncertain: Send cannot tell whether Config.Store recorded the
// message; the error wraps the store's. It was not sent now and Send
// returns a nil tracker, but it may be stored, pending.
//
// When a commit's outcome is unknown (store.ErrOutcomeUnknown: the
// connection broke during the commit), Send commits the message again. Ids
// are unique, so the database orders that commit after the first one, even
// one still running on a server that lost its client: it either stores the
// message (the first commit did not) or fails with store.ErrExists, and
// Send then reads the record back. Only a record that is this message (same
// owner and the very stanza Send wrote ahead, still IN_TRANSIT, unsettled
// and unsent) counts as stored; the record of another message with that id
// (an earlier one's) makes Send fail with tracking.ErrDuplicateID. While
// the store keeps failing, Send tries again (up to every two seconds) and
// sends the message once it knows it is stored. ErrRecordUncertain comes
// only when ctx ends (or the client or the store is closed) first, or the
// message's tracking window does: a message whose window ended is not sent,
// however long ctx lasts. In that last case the error also matches
// tracking.ErrTimedOut, and the message's tracker times out as any
// message's does (recorded, and reported to Config.OnStateChange).
//
// The error is an *UncertainError, which names the id, also one Send made
// up. The client keeps that message in memory (up to 10,000 such messages)
// and settles it in the background as the next Dial would after a
// restart: while the store answers, the recorder looks for its record
// (soon, then after two seconds, then less and less often, up to every
// minute), and a record that is this message, stored and unsent, is sent
// and tracked for the rest of its window (Config.OnStateChange hears its
// changes, Client.Tracker returns its tracker), or recorded TIMED_OUT,
// stamped with its deadline, once its window ended. Sending it, rather
// than closing it ABORTED, keeps one rule for what the store holds
// pending: the next Dial sends it too, and Client.Status and the other
// instances sharing the store see a pending message; a message's fate
// does not depend on whether the process restarted meanwhile. So an
// application that gets ErrRecordUncertain should retry with the id rather
// than send the message again under a new one, which may deliver it twice.
//
// Retry Send with that id and the same message: the retry and the
// background look never both send it (a retry waits while the look works
// on the message, and the other way round). A retry that finds the message
// stored (the first commit landed late) applies the background look's
// rule: it sends it and returns its tracker, tracked for the rest of the
// stored window (not a new one), or, once that window ended, records it
// TIMED_OUT, stamped with its deadline, and fails with ErrRecordSettled
// (matching tracking.ErrTimedOut). One that finds it sent already by the
// client returns its tracker too, while it is pending; one that finds
// nothing stores and sends it as usual; one whose commit meets a record it
// cannot read fails with ErrRecordUncertain again (retry later: the
// message stays in doubt). A retry after the message's record settled
// (its window ended before it was sent, or the client sent it and its
// tracking ended) fails with ErrRecordSettled, and one with another stanza
// under that id with tracking.ErrDuplicateID. A TIMED_OUT the client
// records for a message in doubt is reported to Config.OnStateChange unless
// the application heard it from Send's tracker already; at the MaxPending
// bound the report waits for a free slot. The client forgets the message
// when the store still does not have it once its window ended (at least a
// minute and at most five minutes after Send gave up), and five minutes
// after it found it (a retry then is an ordinary Send: it fails with
// ErrDuplicateID when the id is in the store). A record that lands after
// the client forgot it stays pending in the store, and the next Dial on
// the store sends it, or records TIMED_OUT if its window ended first and
// reports it: an application that heard TIMED_OUT from Send's tracker
// (the window ended while Send was in doubt) then hears it a second time.
var ErrRecordUncertain = errors.New("xmpptrack: the store may have recorded the message; it was not sent now")

// failed notes the store's last failure (nil: its last write succeeded).
func (d *durable) failed(err error) {
	if err == nil {
		if d.failure.Load() != nil {
			d.failure.Store(nil)
		}
		return
	}
	d.failure.Store(&err)
}

// ErrStoreAccount: Config.Store holds another account's messages for the
// same resource (or both without one). Use a store per account, or a
// resource per account in a shared store.
var ErrStoreAccount = errors.New("xmpptrack: the store belongs to another account")

// recorderRetry bounds the wait between attempts to commit changes while
// the store fails.
const recorderRetry = 2 * time.Second

// closeFlush bounds how long Close waits for recorded changes to be
// committed.
const closeFlush = 5 * time.Second

// openDurable takes the owner's lease and starts the recorder.
func openDurable(ctx context.Context, st store.Store, account jid.JID, log *slog.Logger) (*durable, error) {
	owner := store.Instance{Account: account.Bare().String(), Resource: account.Resourcepart()}
	// A store's slot (a resource, or none) belongs to the first account
	// that used it: a store left by another account is refused.
	v, _, err := st.ClaimKey(ctx, store.Key{Scope: "xmpptrack/owner", Name: owner.Resource, Value: owner.Account,
		Expires: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		return nil, fmt.Errorf("xmpptrack: the store's owner: %w", err)
	}
	if v != owner.Account {
		return nil, fmt.Errorf("%w: resource %q of this store is used by %s", ErrStoreAccount, owner.Resource, v)
	}
	lease, err := st.Lock(ctx, owner)
	if errors.Is(err, store.ErrLocked) {
		return nil, err // one sentence: who holds which instance
	}
	if err != nil {
		return nil, fmt.Errorf("xmpptrack: the store's record of %v: %w", owner, err)
	}
	d := &durable{
		st: fenced{Store: st, lost: lease.Lost()}, owner: owner, lease: lease, log: log,
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		hurry:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go d.run()
	return d, nil
}

// hooks returns the registry's hooks with a store: made
// (registry.Config.OnMade), which records each change as it is made, and
// the OnStateChange that reports the changes to next, nil when next is
// (the registry then queues changes only for the trackers' own
// callbacks). Called before the registry exists.
func (d *durable) hooks(next stateHook) (made, report stateHook) {
	if next == nil {
		return d.made, nil
	}
	d.reporting = true
	return d.made, func(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response) {
		n := d.heard.Add(1)
		if d.noted.Load() > 0 {
			kind, missed, first := d.unnote(t, to, n)
			if missed > 0 {
				d.warn("xmpptrack: state changes noted were not reported in order; a CLOSED is reported as not final unless noted",
					"id", t.ID(), "state", to, "missed", missed, "first_id", first.t.ID(), "first_state", first.to)
			}
			switch kind {
			case silent:
				return
			case stillPending:
				r := tracking.Response{}
				if resp != nil {
					r = *resp
				}
				r.Err = ErrStillPending
				resp = &r
			}
		}
		next(t, from, to, resp)
	}
}

// made records a state change as the registry makes it
// (registry.Config.OnMade): under the registry's lock, on the goroutine
// that made it (the stream's reader, for evidence), in the order the
// changes are made. It only queues, whatever the callbacks do: the record
// of a change never waits for Config.OnStateChange or a tracker's
// callback, and an inbound stanza, counted as finished once its handling
// returned (see inbound), comes after the changes it made in the queue.
//
// Not recorded: a re-loaded tracker's move to its stored state (see
// restoring), and the CLOSED changes that closing the client makes (the
// messages stay pending in the store, for the next process on it); the
// hook that reports to Config.OnStateChange learns of those through
// notes.
func (d *durable) made(t *tracking.MessageTracker, _, to tracking.MessageState, resp *tracking.Response) {
	at := time.Now()
	d.mu.Lock()
	if d.reporting {
		d.madeN++
	}
	if d.restored != nil {
		if ok, report := d.wasRestored(t.ID(), to); ok {
			// The store has it; the application saw it before the
			// restart, unless report says it did not.
			if !report {
				d.note(t, to, silent)
			}
			d.mu.Unlock()
			return
		}
	}
	if to == tracking.Closed && d.closing.Load() {
		// Not final for the record: the store keeps it pending.
		d.note(t, to, stillPending)
		d.mu.Unlock()
		return
	}
	d.enqueue(queuedChange{t: t, to: to, at: at, resp: resp})
	d.mu.Unlock()
	d.kick()
}

// note notes how a change made is reported, for the hook that reports to
// Config.OnStateChange (under d.mu).
func (d *durable) note(t *tracking.MessageTracker, to tracking.MessageState, kind noteKind) {
	if !d.reporting {
		return
	}
	d.notes = append(d.notes, note{t: t, to: to, kind: kind, n: d.madeN})
	d.noted.Add(1)
}

// unnote returns how the change of t to the state to, the hook's nth, is
// reported, and takes its note. Changes reach the hook in the order made,
// so its note, if any, is the oldest. A note before it that is due by n
// and not the change's (the hook missed its change: never, unless the
// registry's order broke) is taken and counted in missed (first is the
// first of them), and a CLOSED with no note of its own after them is
// reported as not final (stillPending), the safe reading of the one state
// a note can make final; any other change is reported as made. The check
// only detects a broken order: a change heard after a later one finds its
// note taken and is reported as made, with the warning logged before.
func (d *durable) unnote(t *tracking.MessageTracker, to tracking.MessageState, n uint64) (kind noteKind, missed int, first note) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kind = reported
	for len(d.notes) > 0 {
		head := d.notes[0]
		own := head.t == t && head.to == to
		if !own && head.n > n {
			break // a later change's
		}
		d.notes[0] = note{}
		d.notes = d.notes[1:]
		d.noted.Add(-1)
		if own {
			kind = head.kind
			break
		}
		if missed++; missed == 1 {
			first = head
		}
		if to == tracking.Closed {
			kind = stillPending
		}
	}
	if len(d.notes) == 0 {
		d.notes = nil // let a past burst's array go (Close notes every pending tracker)
	}
	return kind, missed, first
}

// restoring notes that a re-loaded tracker is about to be moved to its
// stored state, a change that is not recorded again, and reported to
// Config.OnStateChange only if report is set (the application has not seen
// it: a window that ended while no process ran). Call it before the move.
func (d *durable) restoring(id string, st tracking.MessageState, report bool) {
	d.mu.Lock()
	if d.restored == nil {
		d.restored = map[string]restoredState{}
	}
	r := restoredState{to: st, report: report, n: 1}
	if prev, ok := d.restored[id]; ok && prev.to == st && prev.report == report {
		r.n = prev.n + 1
	}
	d.restored[id] = r
	d.mu.Unlock()
}

// wasRestored reports (once) whether a change is a re-loaded tracker's
// move to its stored state, and whether to report it (under d.mu).
func (d *durable) wasRestored(id string, to tracking.MessageState) (ok, report bool) {
	if st, ok := d.restored[id]; ok && st.to == to {
		d.unrestore(id)
		return true, st.report
	}
	return false, false
}

// unrestore takes one announced move of id off d.restored (under d.mu).
func (d *durable) unrestore(id string) {
	r := d.restored[id]
	if r.n--; r.n > 0 {
		d.restored[id] = r
		return
	}
	delete(d.restored, id)
	if len(d.restored) == 0 {
		d.restored = nil // let the map's memory go
	}
}

// changeOf turns a tracker's state change into a store change; from
// makes the sender's string.
func changeOf(q *queuedChange, from *fromString) store.Change {
	id := q.id
	if q.t != nil {
		id = q.t.ID() // formatted on each call (see MessageTracker.ID)
	}
	c := store.Change{ID: id, State: q.to, At: q.at}
	resp := q.resp
	if resp == nil {
		return c
	}
	c.From = from.of(resp.From)
	c.StanzaID = resp.StanzaID
	if resp.Err != nil {
		var de *stanza.DeliveryError
		if errors.As(resp.Err, &de) {
			c.Condition = string(de.Stanza.Condition)
			c.Text = errorText(de.Stanza)
		} else {
			c.Text = resp.Err.Error()
		}
	}
	return c
}

// errorText picks the text of a stanza error: the one without a language
// tag, else English, else any.
func errorText(e xstanza.Error) string {
	if t, ok := e.Text[""]; ok {
		return t
	}
	if t, ok := e.Text["en"]; ok {
		return t
	}
	for _, t := range e.Text {
		return t
	}
	return ""
}

// record queues a change of the message id for the recorder, with its
// evidence if any, as made does for a tracker's. It never blocks.
func (d *durable) record(id string, to tracking.MessageState, at time.Time, resp *tracking.Response) {
	d.mu.Lock()
	d.enqueue(queuedChange{id: id, to: to, at: at, resp: resp})
	d.mu.Unlock()
	d.kick()
}

// enqueue queues a change for the recorder (under d.mu).
func (d *durable) enqueue(q queuedChange) {
	if d.queue == nil {
		d.queue, d.spare = d.spare, nil
	}
	d.queue = append(d.queue, q)
	d.queued++
}

// sessionEvery is how often the recorder saves the stream-management state
// when it changed and nothing else was committed.
const sessionEvery = 100 * time.Millisecond

// gather is how long the recorder lets changes accumulate after the first
// one before it commits them: on a busy stream a commit then carries many
// messages' changes (each commit costs a transaction, a write of the
// stream-management state and an update per message), and a message whose
// receipt and marker arrive together is updated once. It bounds how much
// later than now a change reaches the store; Client.Status and Close do not
// wait for it (see flush).
const gather = 5 * time.Millisecond

// run commits the queued changes and sequence numbers, as many at a time
// as are waiting, with the stream-management state when it changed. While
// the store fails it keeps them (tracking goes on in memory) and tries
// again, so that they are written once the store is back.
func (d *durable) run() {
	defer close(d.done)
	tick := time.NewTicker(sessionEvery)
	defer tick.Stop()
	linger := time.NewTimer(gather)
	linger.Stop()
	for {
		woke := false
		select {
		case <-d.wake:
			woke = true
		case <-d.hurry:
		case <-tick.C:
		case <-d.lease.Lost():
			d.leaseLost()
			return
		case <-d.stop:
			d.saveSession() // the last word, best effort
			return
		}
		for first := true; ; first = false {
			// Every round, also on a stream so busy that the recorder
			// never waits for its tick.
			d.maybeResolve() // see resolve.go
			if woke || !first {
				d.gather(linger)
			}
			// The session first: its outbound count covers only numbers
			// already reported to onWritten (sm reports a number before
			// it counts it), so the drain after it (take) takes every
			// message number up to it, and a successor never guesses
			// their place.
			d.mu.Lock()
			asked := d.asked // answered by the session taken now
			d.mu.Unlock()
			b, sess := d.nextBatch()
			batch := b.Changes
			if len(batch)+len(b.Written)+len(b.Sessions) == 0 {
				d.mu.Lock()
				d.answer(asked)
				d.mu.Unlock()
				break
			}
			committed, first, running := d.commit(b)
			if !running {
				if d.lostLease() {
					d.leaseLost()
				}
				return
			}
			if committed {
				d.nums.committed(b)
			}
			if first && cap(batch) <= maxKeptChanges {
				// The store returned from the batch's only Commit: nothing
				// holds its changes' array any more.
				clear(batch)
				d.changes = batch[:0]
			}
			if len(b.Sessions) > 0 {
				d.last = sess
				// Only what this commit wrote raises the bound of the acks
				// (see handled): d.failure is shared with writeAhead, whose
				// success may clear it while a refused batch is handled.
				if committed {
					d.saved.Store(&sess)
					d.ackSaved(sess)
				}
			}
			d.mu.Lock()
			d.written += uint64(len(batch))
			d.answered = max(d.answered, asked)
			close(d.progress)
			d.progress = make(chan struct{})
			d.mu.Unlock()
		}
	}
}

// nextBatch returns the recorder's next batch: the stream-management state
// if it changed (sess, in b.Sessions then), the message numbers its
// outbound count covers, and the changes queued. In that order: the
// session's inbound count covers only stanzas whose changes were queued
// before it was read (see inbound), so the changes taken after it include
// them.
func (d *durable) nextBatch() (b *store.Batch, sess store.Session) {
	sess, changed, written := d.take()
	b = &store.Batch{Changes: d.takeChanges(), Written: written}
	if changed {
		b.Sessions = []store.Session{sess}
	}
	return b, sess
}

// takeChanges takes the queued changes as the store's, in the array of the
// last committed batch; the queue's array goes back for the next queue
// unless it holds more than maxKeptChanges.
func (d *durable) takeChanges() []store.Change {
	d.mu.Lock()
	q := d.queue
	d.queue = nil
	d.mu.Unlock()
	if hook := d.takenHook.Load(); hook != nil {
		(*hook)()
	}
	if len(q) == 0 {
		return nil
	}
	changes := d.changes[:0]
	d.changes = nil
	for i := range q {
		changes = append(changes, changeOf(&q[i], &d.from))
	}
	if cap(q) > maxKeptChanges {
		return changes
	}
	clear(q) // its ids and evidence are in changes now
	d.mu.Lock()
	d.spare = q[:0]
	d.mu.Unlock()
	return changes
}

// maxKeptChanges bounds the arrays the recorder keeps for its next round
// (the queue's and the batch's changes): a burst, such as the changes queued
// while the store was down, would otherwise hold its size until Close.
const maxKeptChanges = 4096

// answer notes (under d.mu) that the session taken after asked calls of
// saveSessionNow is as saved as it will be.
func (d *durable) answer(asked uint64) {
	if asked > d.answered {
		d.answered = asked
		close(d.progress)
		d.progress = make(chan struct{})
	}
}

// saveSessionNow makes the recorder save the stream-management state as it
// is now, without gathering, and waits until it did (or gave up, or ctx
// ended): the inbound count then covers every stanza the application
// finished before the call, and so may the acks we send (see handled), and
// so do the changes queued before it. Dial calls it before it returns,
// Client.Close before its final <a/>.
func (d *durable) saveSessionNow(ctx context.Context) {
	d.mu.Lock()
	d.asked++
	target := d.asked
	d.mu.Unlock()
	d.hurryUntil(ctx, func() bool { return d.answered >= target })
}

// streamSaved reports whether the store holds the current stream's state
// as committed by this process or loaded at Dial (a stream that cannot be
// resumed has none to hold).
func (d *durable) streamSaved() bool {
	c := d.client.Load()
	if c == nil {
		return true
	}
	id := c.sm.Resumption().ID
	s := d.saved.Load()
	return id == "" || s != nil && s.ID == id
}

// gather waits for more changes to queue: gather long, or until flush
// hurries it or close stops the recorder.
func (d *durable) gather(t *time.Timer) {
	t.Reset(gather)
	select {
	case <-t.C:
		return
	case <-d.hurry:
	case <-d.stop:
	}
	t.Stop()
}

// saveSession is the recorder's last word: it commits the
// stream-management state if it changed, with the message numbers its
// outbound count covers and, as every round does, the changes queued
// after it was read (see run): its inbound count covers stanzas whose
// changes were queued before they finished (see inbound), so the
// changes go with it.
func (d *durable) saveSession() {
	b, sess := d.nextBatch()
	if len(b.Changes)+len(b.Written)+len(b.Sessions) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeFlush)
	defer cancel()
	if err := d.st.Commit(ctx, b); err != nil && !errors.Is(err, store.ErrCursorsUnknown) {
		d.warn("xmpptrack: the stream-management state was not saved", "err", err)
		return
	}
	d.nums.committed(b)
	if len(b.Sessions) > 0 {
		d.last = sess
		d.saved.Store(&sess)
	}
}

// handled bounds the inbound count of the acks we send
// (sm.Config.Handled) by the count the store has saved for the current
// stream: the stanzas whose callbacks returned, as committed. A stanza
// still in its callbacks when the process dies is thus never acknowledged
// to the server, which replays it to the next process on resumption; and
// that process, claiming the saved count, never claims less than an ack
// said (Prosody 0.12 ends a session whose resumption does: "Client
// acknowledged less stanzas than already acknowledged"). The acks lag the
// application by a commit (at most sessionEvery): a bound below what was
// received wakes the recorder, so that the next ack is current; Close's
// final ack saves first (saveSessionNow) and does not lag. A stream
// that cannot be resumed has nothing to carry over: every stanza received
// is acknowledged. next is the application's own bound, if any.
func (d *durable) handled(next func(uint32) uint32) func(uint32) uint32 {
	return func(received uint32) uint32 {
		h := received
		if next != nil {
			h = next(received)
		}
		c := d.client.Load()
		if c == nil {
			return h
		}
		id := c.sm.Resumption().ID
		if id == "" {
			return h
		}
		var bound uint32 // nothing saved for this stream yet: the last ack stands
		if s := d.saved.Load(); s != nil && s.ID == id {
			bound = s.Inbound
		}
		if int32(bound-h) < 0 {
			h = bound
			d.kick()
		}
		return h
	}
}

// ackSaved tells the server, with an unsolicited <a/> (XEP-0198 allows
// one at any time), that the stanzas the store now counts as finished are
// handled, when an earlier ack covered less (see handled). Servers ask
// again only once they sent more (Prosody), so without it the last stanzas
// of a quiet stream would stay unacknowledged, and be replayed on the next
// resumption. The write runs on a goroutine of its own, one at a time:
// the recorder waits for its store's commits, never for the XMPP stream.
func (d *durable) ackSaved(sess store.Session) {
	c := d.client.Load()
	if c == nil || !d.ackDue(c) {
		return
	}
	if !d.acking.CompareAndSwap(false, true) {
		return // the one under way looks again when done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil || c.closing {
		d.acking.Store(false)
		return
	}
	// Under c.mu, so that Close (which sets closing under it, then waits
	// for the workers) either waits for this one or sees none.
	c.workers.Go(func() {
		for {
			if hook := d.ackHook.Load(); hook != nil {
				(*hook)()
			}
			// The current session each time: a reconnection replaces the
			// one of the save that started this.
			c.mu.Lock()
			s, closing := c.session, c.closing
			c.mu.Unlock()
			if s == nil || closing || !c.sm.Info().Enabled {
				d.acking.Store(false)
				return
			}
			// A write cut short closes the connection: the loop reconnects.
			c.sm.SendAck(context.Background(), s)
			d.acking.Store(false)
			// A save while this one wrote: its call found this one under way.
			if !d.ackDue(c) || !d.acking.CompareAndSwap(false, true) {
				return
			}
		}
	})
}

// ackDue reports whether the store saved more of the current stream's
// inbound stanzas than the last ack we sent covered.
func (d *durable) ackDue(c *Client) bool {
	sess := d.saved.Load()
	if sess == nil {
		return false
	}
	r := c.sm.Resumption()
	return r.ID != "" && r.ID == sess.ID && int32(sess.Inbound-r.Told) > 0
}

// kick wakes the recorder without blocking.
func (d *durable) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// saveNow makes the recorder save the stream-management state at once,
// without gathering (a new stream's: a process killed right after it must
// find it); it never blocks.
func (d *durable) saveNow() {
	select {
	case d.hurry <- struct{}{}:
	default:
	}
}

// session returns the stream-management state to save, whether it
// differs from the last one saved, and the connection current once it was
// read (see tie). Its inbound count covers only the stanzas the
// application finished with: the stream's count, less the stanzas read on
// this connection that are not finished yet.
func (d *durable) session() (store.Session, bool, uint64) {
	c := d.client.Load()
	if c == nil {
		return store.Session{}, false, 0
	}
	gen, fin := d.counts() // before the counters: fin only grows
	r := c.sm.Resumption()
	in := r.Handled
	now, _ := d.counts()
	switch {
	case now != gen || r.Read < fin:
		in = d.last.Inbound // a new connection meanwhile: keep the last
	case r.Read-fin <= in:
		in -= r.Read - fin
	default:
		in = 0
	}
	if int32(r.Told-in) > 0 {
		// The server dropped what our acks covered: claiming less would
		// not bring it back, and Prosody 0.12 refuses the resumption.
		// (Acks, and the h of a resumption within the process, never
		// exceed the saved count, see handled: this only guards against
		// going back.)
		in = r.Told
	}
	s := store.Session{Owner: d.owner, JID: r.JID.String(), ID: r.ID, Location: r.Location, Max: r.Max,
		Inbound: in, Outbound: r.Sent, Acked: r.Acked}
	if s.JID == "" && s.ID == "" && d.last.ID == "" {
		return s, false, now // nothing to resume yet
	}
	last := d.last
	last.Updated = time.Time{}
	return s, s != last, now
}

// onWritten records the sequence number a message got on the stream
// (sm.Config.OnWritten). It runs under mellium's output lock and the sm
// State's lock (so d.mu comes after that one, and is never held while the
// State is called): it only queues.
func (d *durable) onWritten(s sm.Stanza) {
	if s.Name != "message" || s.ID == "" {
		return
	}
	gen, _ := d.counts() // the connection that counted it (see tie)
	d.mu.Lock()
	d.seqs = append(d.seqs, numbered{store.Written{ID: s.ID, Seq: s.Seq}, gen})
	delete(d.voided, s.ID) // numbered again: a later hold voids it again
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// newConn starts counting the inbound stanzas of a new connection.
func (d *durable) newConn() {
	for {
		v := d.conn.Load()
		if d.conn.CompareAndSwap(v, (v>>32+1)<<32) {
			return
		}
	}
}

// counts returns the current connection and the inbound stanzas finished
// on it.
func (d *durable) counts() (gen uint64, finished uint32) {
	v := d.conn.Load()
	return v >> 32, uint32(v)
}

// finish counts an inbound stanza of connection gen as finished, unless
// a newer connection started.
func (d *durable) finish(gen uint64) {
	for {
		v := d.conn.Load()
		if v>>32 != gen {
			return
		}
		if hook := d.finishHook.Load(); hook != nil {
			(*hook)()
		}
		if d.conn.CompareAndSwap(v, v>>32<<32|uint64(uint32(v)+1)) {
			return
		}
	}
}

// inbound wraps the Serve handler: a stanza counts as finished once its
// handling returned and every callback queued for it ran (a marker queued
// behind them on the callbacks' goroutine counts it). A stanza whose
// callbacks had not returned when the process died is thus not covered by
// the saved inbound count, nor by any ack we sent (see handled), and the
// server sends it again on resumption. The state changes a stanza made
// (a receipt's, a marker's), and every change made before them, were
// queued for the recorder as they were made (see made), before the stanza
// finished; the recorder reads the inbound count before it takes the
// queue, so they are committed with the count that covers the stanza, or
// before: a receipt or marker is never acknowledged to the server while
// its change is not stored. Config.OnStateChange and the trackers' own
// callbacks do not hold back the count, nor our acks. Only the stanzas in
// the stream's inbound count count: those after <enabled/> or
// <resumed/>, which this goroutine handled before them (Enabled says so).
//
// Callbacks are queued for a stanza only by Config.OnMessage and
// Config.Handler (tap, handOff): without either, the marker would run
// after nothing, and the stanza is counted on this goroutine, without a
// wake-up of the callbacks' goroutine per stanza.
//
// Not covered: evidence package muc parks for a message Room.Send has
// not registered yet (a reflection or marker that comes first) is applied
// by Send later, after its stanza finished.
func (d *durable) inbound(h xmpp.Handler) xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		err := h.HandleXMPP(t, start)
		switch start.Name.Local {
		case "message", "presence", "iq":
			c := d.client.Load()
			if !c.sm.Enabled() {
				break
			}
			gen, _ := d.counts()
			if c.cfg.OnMessage == nil && c.cfg.Handler == nil {
				d.finish(gen)
				break
			}
			c.ev.push(func() { d.finish(gen) })
		}
		return err
	})
}

// commit commits a batch, trying again while the store fails. committed
// reports whether the store took the batch: false when it refused it for
// good (store.ErrInvalid, store.ErrClosed: the recorder gives up on it) or
// when the recorder was stopped meanwhile, which running reports. first
// reports that the store took it at the first Commit: no earlier attempt,
// one that ended with its context say, may still be working on it.
func (d *durable) commit(b *store.Batch) (committed, first, running bool) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := d.st.Commit(ctx, b)
		cancel()
		if errors.Is(err, store.ErrCursorsUnknown) {
			err = nil // stored: committing it again would be a repeat
		}
		d.failed(err)
		switch {
		case err == nil:
			return true, attempt == 1, true
		case errors.Is(err, ErrLeaseLost):
			return false, false, false
		case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrClosed):
			d.warn("xmpptrack: state changes not recorded", "count", len(b.Changes), "err", err)
			return false, false, true
		}
		d.warn("xmpptrack: recording state changes failed; trying again", "count", len(b.Changes), "err", err)
		select {
		case <-d.stop:
			return false, false, false
		case <-d.lease.Lost():
			return false, false, false
		case <-time.After(wait):
		}
		wait = min(2*wait, recorderRetry)
	}
}

// flush waits until every change recorded before the call is committed.
func (d *durable) flush(ctx context.Context) error {
	d.mu.Lock()
	target := d.queued
	d.mu.Unlock()
	return d.hurryUntil(ctx, func() bool { return d.written >= target })
}

// hurryUntil wakes the recorder from its gathering and waits until reached
// (called with d.mu held) reports true after one of its rounds, the
// recorder stops (store.ErrClosed) or ctx ends.
func (d *durable) hurryUntil(ctx context.Context, reached func() bool) error {
	select {
	case d.hurry <- struct{}{}:
	default:
	}
	for {
		d.mu.Lock()
		ok, progress := reached(), d.progress
		d.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-progress:
		case <-d.done:
			return store.ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lostLease reports whether the store's lease was lost.
func (d *durable) lostLease() bool {
	select {
	case <-d.lease.Lost():
		return true
	default:
		return false
	}
}

// leaseLost stops the client once the lease was lost (the recorder calls
// it as it stops): nothing is committed any more (see fenced). A client
// not handed to the recorder yet is Dial's to stop (see Dial).
func (d *durable) leaseLost() {
	if c := d.client.Load(); c != nil {
		c.leaseLost()
	}
}

// close commits what was recorded (waiting at most closeFlush), stops the
// recorder and releases the lease.
func (d *durable) close() {
	d.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeFlush)
		if d.lostLease() {
			d.warn("xmpptrack: closing with the store's lease lost: state changes since then not recorded")
		} else if err := d.flush(ctx); err != nil {
			d.warn("xmpptrack: closing with state changes not recorded", "err", err)
		}
		cancel()
		close(d.stop)
		<-d.done
		if err := d.lease.Release(); err != nil {
			d.warn("xmpptrack: releasing the store's lease", "err", err)
		}
	})
}

func (d *durable) warn(msg string, args ...any) {
	if d.log != nil {
		d.log.Warn(msg, args...)
	}
}

// writeAhead commits a message with its stanza before it is written. h
// holds the message in doubt with its id that this Send holds (see claim),
// if any (a retry); a write-ahead in doubt keeps the message there.
func (d *durable) writeAhead(ctx context.Context, id string, m Message, payload *tokbuf.Buffer, deadline time.Time, h *hold) error {
	raw, err := encodeMessage(id, m, payload)
	if err != nil {
		return fmt.Errorf("xmpptrack: encoding the message for the store: %w", err)
	}
	sm := store.Message{
		ID: id, Owner: d.owner, To: m.To.String(), Room: m.Type == xstanza.GroupChatMessage, Thread: m.Thread,
		Channel: m.Channel, Raw: raw, Deadline: deadline, Created: time.Now(),
	}
	err = d.st.Commit(ctx, &store.Batch{Messages: []store.Message{sm}})
	if errors.Is(err, store.ErrCursorsUnknown) {
		err = nil // stored; its cursor is not needed here
	}
	if errors.Is(err, store.ErrOutcomeUnknown) {
		err = d.inDoubt(ctx, sm, m, payload, err, h) // see uncertain.go
	}
	if err != nil {
		if errors.Is(err, store.ErrExists) {
			if h.e != nil && h.tok != nil {
				if ok, aerr := d.adopt(ctx, h, sm); ok || aerr != nil {
					return aerr
				}
			}
			// The store keeps ids for as long as their records: an id of a
			// settled message is taken too.
			return fmt.Errorf("xmpptrack: message id %q is in the store: %w: %w", id, tracking.ErrDuplicateID, err)
		}
		if errors.Is(err, ErrRecordSettled) {
			return err
		}
		d.failed(err)
		if errors.Is(err, ErrRecordUncertain) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	if h.e != nil && h.tok != nil {
		d.resolvedAs(h.e, sm) // stored by this retry
	}
	d.failed(nil)
	return nil
}

// encodeMessage returns the stanza Send writes for m, as stored: the
// element messageXML builds, encoded outside a stream (without the client
// namespace the session adds). A message without payload takes Send's byte
// path (appendMessage, the same bytes at a tenth of the encoder's cost);
// the others go through the encoder (encodeTokens).
func encodeMessage(id string, m Message, payload *tokbuf.Buffer) ([]byte, error) {
	if payload == nil && m.Payload == nil && id != "" {
		return messageBytes(id, m, false), nil
	}
	return encodeTokens(id, m, payload)
}

// encodeTokens encodes messageXML's tokens, as stored. Without payload it
// reads m.Payload, a reader that is then used up: a message sent after it
// was stored must get its payload from a buffered copy (Send's payload).
func encodeTokens(id string, m Message, payload *tokbuf.Buffer) ([]byte, error) {
	if payload != nil {
		payload.Rewind()
		m.Payload = payload
	}
	var buf bytes.Buffer
	enc := xml.NewEncoder(&buf)
	if _, err := xmlstream.Copy(enc, messageXML(id, m)); err != nil {
		return nil, err
	}
	if err := enc.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// deadline is when the tracking window of a message sent now ends; zero
// for none. It mirrors the registry's rule.
func (c *Client) deadline(window time.Duration) time.Time {
	if window == 0 {
		window = c.cfg.Window
	}
	if window == 0 {
		window = registry.DefaultWindow
	}
	if window < 0 {
		return time.Time{}
	}
	return time.Now().Add(min(window, maxWindow))
}

// maxWindow is the registry's cap on windows.
const maxWindow = 24 * 24 * time.Hour

// Status is what is known of one message: its state and, with
// Config.Store, its recorded history.
type Status struct {
	ID string
	// State is the message's state: the live tracker's while this client
	// tracks it, else the store's.
	State tracking.MessageState
	// Settled reports that tracking ended.
	Settled bool
	// Pending reports that this client tracks it now (Client.Tracker
	// returns its tracker).
	Pending bool
	// History lists the recorded state changes with their evidence, oldest
	// first, the first being the message's creation in IN_TRANSIT. It is
	// empty without a store.
	History []store.Change
}

// Status returns a message's state and history, whether it is pending or
// settled, from this client's trackers and Config.Store (which holds every
// instance's messages). It reads its own writes: the history holds every
// change of this client's trackers made before the call, whether or not
// its callbacks ran (the store records a change as it is made). Without a store it answers
// for pending messages only. An unknown id gives an error matching
// store.ErrNotFound.
func (c *Client) Status(ctx context.Context, id string) (Status, error) {
	t := c.reg.Find(id)
	st := Status{ID: id}
	if t != nil {
		st.State, st.Settled, st.Pending = t.State(), t.Settled(), true
	}
	if c.dur == nil {
		if t == nil {
			return Status{}, fmt.Errorf("xmpptrack: message %q is not pending (no store to ask): %w", id, store.ErrNotFound)
		}
		return st, nil
	}
	if err := c.dur.flush(ctx); err != nil {
		return Status{}, fmt.Errorf("xmpptrack: status of %q: %w", id, err)
	}
	rec, err := c.dur.st.Message(ctx, id)
	switch {
	case err == nil:
		st.History = rec.History
		if t == nil {
			st.State, st.Settled = rec.State, rec.Settled
		}
		return st, nil
	case errors.Is(err, store.ErrNotFound) && t != nil:
		return st, nil // not written ahead yet
	}
	return Status{}, fmt.Errorf("xmpptrack: status of %q: %w", id, err)
}

package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// noResolver keeps c's background look at the messages in doubt from
// starting, so that a retry is the first to find a record.
func noResolver(c *Client) { c.dur.resolving.Store(true) }

// TestStoreRetryWindowEndedNotSent: a write-ahead stays in doubt past the
// message's window (Send: ErrRecordUncertain and tracking.ErrTimedOut; the
// application hears TIMED_OUT), and its commit lands when the application
// retries. The retry applies the rule the client's own look applies: a
// record whose window ended is recorded TIMED_OUT at its deadline and not
// sent; the retry gets ErrRecordSettled matching tracking.ErrTimedOut, and
// the application hears TIMED_OUT once.
func TestStoreRetryWindowEndedNotSent(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	var timedOut, other atomic.Int32
	closed, heard := make(chan struct{}), make(chan struct{})
	c, pc := newPeer(t, Config{Store: ls, OnStateChange: func(tr *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
		switch {
		case tr.ID() == "short" && to == tracking.TimedOut:
			if timedOut.Add(1) == 1 {
				close(heard)
			}
		case tr.ID() == "short":
			other.Add(1)
		case tr.ID() == "barrier" && to == tracking.Closed:
			close(closed)
		}
	}})
	noResolver(c)
	m := Message{To: bob, ID: "short", Body: "hello", Window: 300 * time.Millisecond}
	if _, err := c.Send(waitCtx(t), m); !errors.Is(err, ErrRecordUncertain) || !errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("first Send: %v", err)
	}
	// Its tracker's TIMED_OUT found no record to change.
	waitClosed(t, heard)
	if err := c.dur.flush(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The store answers again; the late commit lands at the retry's commit.
	ls.mu.Lock()
	ls.stuck = false
	ls.mu.Unlock()
	tr, err := c.Send(waitCtx(t), m)
	if tr != nil || !errors.Is(err, ErrRecordSettled) || !errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("retry of a message whose stored window ended: %v, %v; want ErrRecordSettled and tracking.ErrTimedOut, nothing sent", tr, err)
	}
	if err := c.dur.flush(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	rec, err := ls.Message(waitCtx(t), "short")
	if err != nil {
		t.Fatal(err)
	}
	last := rec.History[len(rec.History)-1]
	if !rec.Settled || rec.State != tracking.TimedOut || !last.At.Equal(rec.Deadline) || rec.Written {
		t.Fatalf("the record: %+v, last change %+v; want TIMED_OUT at its deadline %v, unsent", rec.Message, last, rec.Deadline)
	}
	sendBarrier(t, c, pc).Close()
	waitClosed(t, closed)
	if n, o := timedOut.Load(), other.Load(); n != 1 || o != 0 {
		t.Fatalf("the application heard TIMED_OUT %d times and %d other changes; want TIMED_OUT once", n, o)
	}
}

// TestStoreRetryAdoptsStoredWindow: a retry finds the first write-ahead
// stored after all, within its window, and sends it: its tracker keeps the
// stored deadline, not a new window (the retry asks for an hour, the record
// has a second), so the tracker and the store end it together.
func TestStoreRetryAdoptsStoredWindow(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	noResolver(c)
	m := Message{To: bob, ID: "adopt", Body: "hello", Window: time.Second}
	if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) || errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("first Send: %v", err)
	}
	ls.mu.Lock()
	ls.stuck = false
	ls.mu.Unlock()
	m.Window = time.Hour // not part of the stanza: the same message
	tr, err := c.Send(waitCtx(t), m)
	if err != nil || tr == nil {
		t.Fatalf("retry of a message stored after all: %v, %v; want it sent", tr, err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "adopt" {
		t.Fatalf("the server got %s, want the message", e.String())
	}
	select {
	case <-tr.Done():
	case <-waitCtx(t).Done():
		t.Fatal("the adopted message's tracker did not end with its stored window (it got a new one)")
	}
	if st := tr.State(); st != tracking.TimedOut && st != tracking.DeliveredToServer {
		t.Fatalf("the tracker ended %v", st)
	}
}

// TestStoreOwedTimedOutAtMaxPending: a message in doubt (Send's ctx ended
// first: its tracker went unreported) whose record lands after its window
// is settled TIMED_OUT by the client's look; at the MaxPending bound the
// application cannot be told at once, and is told once a slot frees,
// rather than never.
func TestStoreOwedTimedOutAtMaxPending(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	heard := make(chan struct{}, 1)
	c, pc := newPeer(t, Config{Store: ls, MaxPending: 1, OnStateChange: func(tr *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
		if tr.ID() == "short" && to == tracking.TimedOut {
			heard <- struct{}{}
		}
	}})
	// The test runs the client's rounds itself, each at once.
	noResolver(c)
	m := Message{To: bob, ID: "short", Body: "hello", Window: time.Minute}
	if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) || errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("first Send: %v", err)
	}
	// Another message takes the only pending slot (no receipt comes).
	blocker, err := c.Send(waitCtx(t), Message{To: bob, ID: "blocker", Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	ls.endWindow()
	landAndAnswer(t, ls)
	c.resolveDoubts()
	if err := c.dur.flush(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	rec, err := ls.Message(waitCtx(t), "short")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Settled || rec.State != tracking.TimedOut {
		t.Fatalf("after a round, the record: %+v; want it settled TIMED_OUT", rec.Message)
	}
	select {
	case <-heard:
		t.Fatal("the application heard TIMED_OUT with no pending slot free")
	default:
	}
	blocker.Close()   // a slot frees
	c.resolveDoubts() // the next round
	select {
	case <-heard:
	case <-waitCtx(t).Done():
		t.Fatal("the store settled the message TIMED_OUT, but the application never heard it")
	}
}

// endWindow ends the window of the held write-ahead: its deadline becomes
// now, so that it lands as a record whose window ended while it was in
// doubt (the client decides by the stored deadline), without the test
// waiting for a window to pass.
func (l *lateStore) endWindow() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held.Messages[0].Deadline = time.Now()
}

// failReadStore fails the next read of a message once armed.
type failReadStore struct {
	store.Store
	arm atomic.Bool
}

func (s *failReadStore) Message(ctx context.Context, id string) (store.Record, error) {
	if s.arm.CompareAndSwap(true, false) {
		return store.Record{}, errConnReset
	}
	return s.Store.Message(ctx, id)
}

// TestStoreRetryReadFails: a retry's commit meets the landed record
// (store.ErrExists) and its read-back fails: the retry cannot tell whose
// record it is, so it reports ErrRecordUncertain (the store could not be
// read), never tracking.ErrDuplicateID; the message stays in doubt and
// the client sends it, once.
func TestStoreRetryReadFails(t *testing.T) {
	fr := &failReadStore{Store: openStore(t)}
	ls := &lateStore{Store: fr, late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	m := Message{To: bob, ID: "dup", Body: "hello"}
	noResolver(c)
	if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) {
		t.Fatalf("first Send: %v", err)
	}
	ls.mu.Lock()
	ls.onCommit = func() { fr.arm.Store(true) } // the read after the retry's commit fails
	ls.mu.Unlock()
	landAndAnswer(t, ls)
	_, err := c.Send(waitCtx(t), m)
	ls.mu.Lock()
	ls.onCommit = nil
	ls.mu.Unlock()
	if !errors.Is(err, ErrRecordUncertain) || errors.Is(err, tracking.ErrDuplicateID) || !strings.Contains(err.Error(), "could not be read") {
		t.Fatalf("retry whose read-back failed: %v; want ErrRecordUncertain saying the store could not be read", err)
	}
	c.dur.resolving.Store(false) // the client's look sends it
	if e := pc.nextMessage(t); e.attr("id") != "dup" {
		t.Fatalf("the server got %s, want the message", e.String())
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "next"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "next" {
		t.Fatalf("the server got %s, want the next message: the message went out twice", e.String())
	}
}

// msStore keeps Created to the millisecond, as the store contract allows
// (storetest compares it at milliseconds).
type msStore struct{ store.Store }

func (s msStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) == 0 {
		return s.Store.Commit(ctx, b)
	}
	cp := *b
	cp.Messages = append([]store.Message(nil), b.Messages...)
	for i := range cp.Messages {
		cp.Messages[i].Created = cp.Messages[i].Created.Truncate(time.Millisecond)
	}
	err := s.Store.Commit(ctx, &cp)
	for i := range b.Messages {
		b.Messages[i].Cursor = cp.Messages[i].Cursor
	}
	return err
}

// TestStoreInDoubtOwnSettledMillisecondStore: TestStoreInDoubtFindsOwnSettled
// on a store that keeps creation times to the millisecond: Send still knows
// its own record and reports ErrRecordSettled.
func TestStoreInDoubtOwnSettledMillisecondStore(t *testing.T) {
	ls := &lateStore{Store: msStore{openStore(t)}, late: true}
	c, _ := newPeer(t, Config{Store: ls})
	settleAtRetry(t, ls, "own")
	// Created must have sub-millisecond digits for the store to drop some.
	for time.Now().Nanosecond()%int(time.Millisecond) < 2000 {
	}
	tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "own", Body: "hello"})
	if tr != nil || !errors.Is(err, ErrRecordSettled) || errors.Is(err, tracking.ErrDuplicateID) {
		t.Fatalf("Send finding its own record settled on a millisecond store: %v, %v; want ErrRecordSettled", tr, err)
	}
}

// TestDoubtReleaseOnlyByHolder: a hold on a message in doubt is let go
// only by its holder, once: a second release (the retry's failure path
// used to release twice) leaves the resolver's hold alone, and a Send
// that did not hold the message releases nothing.
func TestDoubtReleaseOnlyByHolder(t *testing.T) {
	d, err := openDurable(context.Background(), &doubtStore{}, jid.MustParse("a@example.org/r"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	m := store.Message{ID: "m", To: "b@example.org"}
	doubtOne(d, m) // the first Send gives up
	retry := &hold{id: "m"}
	if err := d.claim(context.Background(), retry); err != nil || retry.e == nil {
		t.Fatalf("the retry's claim: %v, %+v", err, retry)
	}
	d.doubted(m, Message{}, nil, retry) // in doubt again: still the retry's
	d.release(retry)
	r := d.tryClaim("m") // the resolver's round
	if r == nil {
		t.Fatal("the resolver could not claim the released message")
	}
	d.release(retry) // released again: must not free the resolver's hold
	other := &hold{}
	d.doubted(m, Message{}, nil, other) // another Send with the id, in doubt
	d.release(other)
	if h := d.tryClaim("m"); h != nil {
		t.Fatal("a claim succeeded while the resolver holds the message")
	}
	d.release(r)
	if h := d.tryClaim("m"); h == nil {
		t.Fatal("the resolver's release did not let the message go")
	}
	d.mu.Lock()
	n := len(d.unsure["m"].created)
	d.mu.Unlock()
	if n != 3 {
		t.Fatalf("%d write-aheads noted; want 3 (the other Send's too)", n)
	}
}

// TestDoubtsBoundLoggedOutsideLock: the warning that the bound on messages
// in doubt is reached runs Config.Logger's handler without the durable
// lock held (which mellium's writes and Client.Status take).
func TestDoubtsBoundLoggedOutsideLock(t *testing.T) {
	var d *durable
	var logged, held atomic.Bool
	log := slog.New(hookHandler{func(r slog.Record) {
		if strings.Contains(r.Message, "too many messages in doubt") {
			logged.Store(true)
			if d.mu.TryLock() {
				d.mu.Unlock()
			} else {
				held.Store(true)
			}
		}
	}})
	var err error
	d, err = openDurable(context.Background(), &doubtStore{}, jid.MustParse("a@example.org/r"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for i := range maxDoubts + 1 {
		doubtOne(d, store.Message{ID: fmt.Sprint("m", i), To: "b@example.org"})
	}
	if !logged.Load() || held.Load() {
		t.Fatalf("logged %v, with the lock held %v; want logged without it", logged.Load(), held.Load())
	}
}

// TestStoreRetryWindowEndedReports: as TestStoreRetryWindowEndedNotSent,
// but Send's ctx ended before the window did, so the application never
// heard the message's TIMED_OUT: the retry that records it tells
// Config.OnStateChange, once.
func TestStoreRetryWindowEndedReports(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	var timedOut atomic.Int32
	closed := make(chan struct{})
	c, pc := newPeer(t, Config{Store: ls, OnStateChange: func(tr *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
		switch {
		case tr.ID() == "short" && to == tracking.TimedOut:
			timedOut.Add(1)
		case tr.ID() == "barrier" && to == tracking.Closed:
			close(closed)
		}
	}})
	noResolver(c)
	m := Message{To: bob, ID: "short", Body: "hello", Window: time.Minute}
	if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) || errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("first Send: %v", err)
	}
	ls.endWindow()
	ls.mu.Lock()
	ls.stuck = false // the late commit lands at the retry's commit
	ls.mu.Unlock()
	tr, err := c.Send(waitCtx(t), m)
	if tr != nil || !errors.Is(err, ErrRecordSettled) || !errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("retry of a message whose stored window ended: %v, %v; want ErrRecordSettled and tracking.ErrTimedOut", tr, err)
	}
	sendBarrier(t, c, pc).Close()
	waitClosed(t, closed)
	if n := timedOut.Load(); n != 1 {
		t.Fatalf("the application heard TIMED_OUT %d times; want once", n)
	}
}

// TestStoreRetryResolvedReadFails: a retry of a message the client sent
// meanwhile, whose tracking ended, cannot read its record: it gets the
// store's error, not ErrRecordSettled, which would claim a settled record
// nobody read.
func TestStoreRetryResolvedReadFails(t *testing.T) {
	fr := &failReadStore{Store: openStore(t)}
	ls := &lateStore{Store: fr, late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	m := Message{To: bob, ID: "later", Body: "hello"}
	tr := sentLater(t, c, pc, ls, m)
	tr.Close()
	<-tr.Done()
	fr.arm.Store(true)
	_, err := c.Send(waitCtx(t), m)
	if err == nil || errors.Is(err, ErrRecordSettled) || !errors.Is(err, errConnReset) {
		t.Fatalf("retry whose record cannot be read: %v; want the store's error, not ErrRecordSettled", err)
	}
	if _, err := c.Send(waitCtx(t), m); !errors.Is(err, ErrRecordSettled) {
		t.Fatalf("retry once the store answers: %v; want ErrRecordSettled", err)
	}
}

package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// lateStore wraps a store whose message commits, while late is set, fail
// with store.ErrOutcomeUnknown and land later, as on a PostgreSQL server
// still committing for a client whose connection broke. The held commit
// lands right after the next read-back of one of its ids (which does not
// find it), or before the next commit of one of its ids: the database
// makes that insert wait for it. With twice set, that next commit fails
// with an unknown outcome too, having done nothing. With stuck set, every
// commit of its ids fails so and it lands only when the test calls land.
type lateStore struct {
	store.Store
	mu    sync.Mutex
	late  bool
	twice bool
	stuck bool
	held  *store.Batch
	// doubts counts the commits of the held message answered in doubt;
	// onSecondDoubt, if set, runs at the second (a test ends Send's ctx
	// there, once Send is surely in its loop of commits again).
	doubts        int
	onSecondDoubt func()
	// onRead and onCommit, if set, run at the start of each read of a
	// message and of each commit of new messages.
	onRead   func(id string)
	onCommit func()
}

func (l *lateStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) == 0 {
		return l.Store.Commit(ctx, b)
	}
	l.mu.Lock()
	hook := l.onCommit
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != nil && l.held.Messages[0].ID == b.Messages[0].ID {
		if l.twice || l.stuck {
			l.twice = false
			if l.doubts++; l.doubts == 1 && l.onSecondDoubt != nil {
				l.onSecondDoubt()
			}
			return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, errConnReset)
		}
		l.land(ctx)
	}
	if l.late && l.held == nil {
		l.held = &store.Batch{Messages: append([]store.Message(nil), b.Messages...)}
		return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, errConnReset)
	}
	return l.Store.Commit(ctx, b)
}

func (l *lateStore) Message(ctx context.Context, id string) (store.Record, error) {
	l.mu.Lock()
	hook := l.onRead
	l.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	rec, err := l.Store.Message(ctx, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != nil && l.held.Messages[0].ID == id && !l.stuck {
		l.land(ctx)
	}
	return rec, err
}

// land commits the held batch; l.mu is held.
func (l *lateStore) land(ctx context.Context) {
	if err := l.Store.Commit(context.WithoutCancel(ctx), l.held); err != nil {
		panic(fmt.Sprintf("the late commit failed: %v", err))
	}
	l.held, l.late = nil, false
}

// TestStoreWriteAheadLandsLate: the write-ahead's commit has an unknown
// outcome and lands only after a read-back would have missed it. Send
// commits the message again, which the database orders after the late
// commit: it finds its own record and sends the message, once. When that
// second commit's outcome is unknown too (twice), and the read-back misses
// the record, which then lands, Send tries again and finds it.
func TestStoreWriteAheadLandsLate(t *testing.T) {
	for _, twice := range []bool{false, true} {
		t.Run(fmt.Sprintf("twice=%v", twice), func(t *testing.T) {
			ls := &lateStore{Store: openStore(t), late: true, twice: twice}
			c, pc := newPeer(t, Config{Store: ls})
			tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "late", Body: "hello"})
			if err != nil || tr == nil {
				t.Fatalf("Send whose write-ahead landed late: %v, %v; want it sent", tr, err)
			}
			if e := pc.nextMessage(t); e.attr("id") != "late" {
				t.Fatalf("the server got %s, want the message", e.String())
			}
			rec, err := ls.Message(waitCtx(t), "late")
			if err != nil || rec.Settled {
				t.Fatalf("the record: %+v, %v", rec.Message, err)
			}
			if err := c.Stats().StoreErr; err != nil {
				t.Fatalf("Stats().StoreErr after the message was found stored: %v", err)
			}
		})
	}
}

// TestStoreUncertainGeneratedID: a message without an id gets one from
// Send; when its write-ahead stays in doubt, the error names that id, and a
// retry with it adopts the record that landed late instead of storing and
// sending a second copy under a new id.
func TestStoreUncertainGeneratedID(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	m := Message{To: bob, Body: "hello"}
	_, err := sendInDoubt(t, c, ls, m)
	var ue *UncertainError
	if !errors.As(err, &ue) || ue.ID == "" || !errors.Is(err, ErrRecordUncertain) || !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Send whose write-ahead stayed in doubt: %v; want an *UncertainError naming the id", err)
	}
	ls.mu.Lock()
	ls.land(waitCtx(t))
	ls.stuck = false
	ls.mu.Unlock()
	m.ID = ue.ID
	tr, err := c.Send(waitCtx(t), m)
	if err != nil || tr == nil || tr.ID() != ue.ID {
		t.Fatalf("retry with the id of the error: %v, %v; want the late record adopted and sent", tr, err)
	}
	if e := pc.nextMessage(t); e.attr("id") != ue.ID {
		t.Fatalf("the server got %s, want %s", e.attr("id"), ue.ID)
	}
}

// TestStoreUncertainRetry: the store stays in doubt until Send's ctx ends,
// and the message lands after: Send reports ErrRecordUncertain and the
// store holds the message, pending. A retry with the same id and another
// stanza is refused as a duplicate; a retry with the same message adopts
// the record: it sends the message and returns its tracker.
func TestStoreUncertainRetry(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	m := Message{To: bob, ID: "unsure", Body: "hello"}
	// ctx ends at Send's second try (the store answers nothing definite
	// before it, however long it is).
	tr, err := sendInDoubt(t, c, ls, m)
	if tr != nil || !errors.Is(err, ErrRecordUncertain) || !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Send whose write-ahead stayed in doubt: %v, %v; want a nil tracker and ErrRecordUncertain", tr, err)
	}
	ls.mu.Lock()
	ls.land(waitCtx(t))
	ls.stuck = false
	ls.mu.Unlock()
	// The client's background look for the record (see ErrRecordUncertain)
	// may find it first and send it, and the server's ack then moves it to
	// DELIVERED_TO_SERVER, with that change in its history.
	rec, err := ls.Store.Message(waitCtx(t), "unsure")
	if err != nil || rec.Settled || (rec.State != tracking.InTransit && rec.State != tracking.DeliveredToServer) {
		t.Fatalf("the late commit did not land: %+v, %v", rec.Message, err)
	}
	if h := rec.History; rec.State == tracking.DeliveredToServer && (len(h) != 2 || h[1].State != tracking.DeliveredToServer) {
		t.Fatalf("DELIVERED_TO_SERVER without its change: %+v", h)
	}
	other := m
	other.Body = "something else"
	if tr, err := c.Send(waitCtx(t), other); tr != nil || !errors.Is(err, tracking.ErrDuplicateID) {
		t.Fatalf("retry with the same id and another body: %v, %v; want ErrDuplicateID", tr, err)
	}
	tr, err = c.Send(waitCtx(t), m)
	if err != nil || tr == nil || tr.ID() != "unsure" {
		t.Fatalf("retry of the uncertain message: %v, %v; want it adopted and sent", tr, err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "unsure" {
		t.Fatalf("the server got %s, want the uncertain message", e.String())
	}
	if c.Tracker("unsure") != tr {
		t.Fatal("the adopted message is not tracked")
	}
	// A second retry while it is tracked gets its tracker; once its
	// tracking ended, ErrRecordSettled, which names the state.
	if again, err := c.Send(waitCtx(t), m); again != tr || err != nil {
		t.Fatalf("a second retry after the adoption: %v, %v; want its tracker", again, err)
	}
	seen := callbackRan(tr, tracking.Closed)
	tr.Close()
	waitClosed(t, seen)
	if _, err := c.Send(waitCtx(t), m); !errors.Is(err, ErrRecordSettled) || errors.Is(err, tracking.ErrDuplicateID) ||
		!strings.Contains(err.Error(), "CLOSED") {
		t.Fatalf("a retry after its tracking ended: %v; want ErrRecordSettled naming CLOSED", err)
	}
}

// TestStoreInDoubtReusedID: a write-ahead in doubt whose id belongs to an
// earlier, settled message of the same owner: the record read back is not
// this message, so Send refuses the id and sends nothing. (The earlier
// message is an hour old: one created in the same millisecond, which is
// all a store keeps of a creation time, would be taken as this one's
// record.)
func TestStoreInDoubtReusedID(t *testing.T) {
	fs := &faultyStore{Store: openStore(t)}
	c, pc := newPeer(t, Config{Store: fs})
	earlier := store.Message{ID: "reused", Owner: c.dur.owner, To: bob.String(), Created: time.Now().Add(-time.Hour),
		Raw: []byte(`<message xmlns="jabber:client" to="bob@example.org" id="reused" type="chat"><body>first</body></message>`)}
	if err := fs.Store.Commit(waitCtx(t), &store.Batch{Messages: []store.Message{earlier},
		Changes: []store.Change{{ID: "reused", State: tracking.Closed, At: earlier.Created}}}); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Status(waitCtx(t), "reused"); err != nil || !s.Settled {
		t.Fatalf("the earlier message: %+v, %v", s, err)
	}
	fs.doubt.Store(doubtLost)
	tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "reused", Body: "second"})
	if tr != nil || !errors.Is(err, tracking.ErrDuplicateID) || !errors.Is(err, store.ErrExists) {
		t.Fatalf("Send in doubt with a reused id: %v, %v; want a nil tracker and ErrDuplicateID", tr, err)
	}
	fs.doubt.Store(0)
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "next"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "next" {
		t.Fatalf("the server got %s: the message with the reused id went out", e.String())
	}
}

// doubtStore is a store whose message commits all end in doubt and which
// has no message: a store that never answers.
type doubtStore struct{ batchStore }

func (s *doubtStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) > 0 {
		return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, errConnReset)
	}
	return s.batchStore.Commit(ctx, b)
}

func (s *doubtStore) Message(context.Context, string) (store.Record, error) {
	return store.Record{}, store.ErrNotFound
}

// doubtOne keeps m in doubt as a Send that gave up on it does, and
// releases it.
func doubtOne(d *durable, m store.Message) {
	h := &hold{}
	d.doubted(m, Message{}, nil, h)
	d.release(h)
}

// TestInDoubtEndsWithWindow: while the store cannot tell whether it stored
// the message, Send tries again until ctx ends or, first, the message's
// tracking window does: a message whose window ended is not sent, however
// long ctx lasts. The error then also matches tracking.ErrTimedOut.
func TestInDoubtEndsWithWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, err := openDurable(context.Background(), &doubtStore{}, jid.MustParse("a@example.org/r"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		start := time.Now()
		deadline := start.Add(time.Minute)
		h := &hold{}
		err = d.writeAhead(ctx, "m1", Message{To: bob, Body: "hi"}, nil, deadline, h)
		if !errors.Is(err, ErrRecordUncertain) || !errors.Is(err, tracking.ErrTimedOut) {
			t.Fatalf("write-ahead in doubt past its window: %v; want ErrRecordUncertain and ErrTimedOut", err)
		}
		if got := time.Since(start); got != time.Minute {
			t.Fatalf("Send gave up after %v; want the window, %v", got, time.Minute)
		}
		d.release(h)
		// A ctx shorter than the window: ErrRecordUncertain alone.
		ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		err = d.writeAhead(ctx2, "m2", Message{To: bob, Body: "hi"}, nil, time.Now().Add(time.Minute), &hold{})
		if !errors.Is(err, ErrRecordUncertain) || errors.Is(err, tracking.ErrTimedOut) {
			t.Fatalf("write-ahead in doubt past ctx: %v; want ErrRecordUncertain only", err)
		}
	})
}

// settleAtRetry makes the write-ahead of message id land late on ls: when
// Send commits it again, the first commit lands and the record is settled
// TIMED_OUT before Send reads it back.
func settleAtRetry(t *testing.T, ls *lateStore, id string) {
	var commits int
	ls.onCommit = func() {
		if commits++; commits != 2 {
			return
		}
		ls.mu.Lock()
		ls.land(waitCtx(t))
		ls.mu.Unlock()
		if err := ls.Store.Commit(waitCtx(t), &store.Batch{Changes: []store.Change{{ID: id, State: tracking.TimedOut}}}); err != nil {
			t.Error(err)
		}
	}
}

// TestStoreInDoubtFindsOwnSettled: the write-ahead's first commit lands
// late and its record is settled (TIMED_OUT) before Send reads it back:
// Send reports ErrRecordSettled, its own record's state, not
// tracking.ErrDuplicateID as for another message's record.
func TestStoreInDoubtFindsOwnSettled(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true}
	c, pc := newPeer(t, Config{Store: ls})
	settleAtRetry(t, ls, "own")
	tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "own", Body: "hello"})
	if tr != nil || !errors.Is(err, ErrRecordSettled) || errors.Is(err, tracking.ErrDuplicateID) {
		t.Fatalf("Send finding its own record settled: %v, %v; want ErrRecordSettled", tr, err)
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "next"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "next" {
		t.Fatalf("the server got %s: the settled message went out", e.String())
	}
}

// sendInDoubt sends m through a client on ls whose write-ahead stays in
// doubt: Send's ctx ends at its second commit, once Send is surely in its
// loop of commits. It returns Send's tracker and error.
func sendInDoubt(t *testing.T, c *Client, ls *lateStore, m Message) (*tracking.MessageTracker, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(waitCtx(t))
	defer cancel()
	ls.mu.Lock()
	ls.onSecondDoubt = cancel
	ls.mu.Unlock()
	return c.Send(ctx, m)
}

// sendBarrier sends a message after the others and checks that it is the
// next one the server gets: callbacks run in order, so once the barrier's
// tracker closed every earlier callback ran (see waitClosed).
func sendBarrier(t *testing.T, c *Client, pc *peerConn) *tracking.MessageTracker {
	t.Helper()
	b, err := c.Send(waitCtx(t), Message{To: bob, ID: "barrier"})
	if err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "barrier" {
		t.Fatalf("the server got %s, want only the barrier", e.String())
	}
	return b
}

package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// resolveRounds makes c's rounds of resolveDoubts send on the returned
// channel when they end.
func resolveRounds(c *Client) <-chan struct{} {
	ch := make(chan struct{}, 1)
	f := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	c.dur.resolveHook.Store(&f)
	return ch
}

// nextRound waits for the end of a round of resolveDoubts (the caller
// loops until it sees what it waits for).
func nextRound(t *testing.T, rounds <-chan struct{}) {
	t.Helper()
	select {
	case <-rounds:
	case <-waitCtx(t).Done():
		t.Fatal("the client did not look at the messages in doubt")
	}
}

// landAndAnswer lands the held commit of ls and lets its commits and reads
// answer again.
func landAndAnswer(t *testing.T, ls *lateStore) {
	ls.mu.Lock()
	ls.land(waitCtx(t))
	ls.stuck = false
	ls.mu.Unlock()
}

// sentLater sends m through c on ls with its write-ahead left in doubt,
// lets the write-ahead land, and returns the tracker of the message the
// client then finds stored and sends (checked on the wire of pc).
func sentLater(t *testing.T, c *Client, pc *peerConn, ls *lateStore, m Message) *tracking.MessageTracker {
	t.Helper()
	tr, _ := sentLaterWire(t, c, pc, ls, m)
	return tr
}

// sentLaterWire is sentLater that also returns the stanza the server got.
func sentLaterWire(t *testing.T, c *Client, pc *peerConn, ls *lateStore, m Message) (*tracking.MessageTracker, element) {
	t.Helper()
	if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) {
		t.Fatalf("Send whose write-ahead stayed in doubt: %v; want ErrRecordUncertain", err)
	}
	landAndAnswer(t, ls)
	e := pc.nextMessage(t)
	if e.attr("id") != m.ID {
		t.Fatalf("the server got %s, want the message found stored", e.String())
	}
	tr := c.Tracker(m.ID)
	if tr == nil {
		t.Fatal("the message sent after all is not tracked")
	}
	return tr, e
}

// TestStoreUncertainSentLater: the write-ahead stays in doubt until Send's
// ctx ends, then lands; the application does not retry. Once the store
// answers, the client finds the message stored and unsent and sends it, as
// the next Dial would; its tracker is then Client.Tracker's, and a retry
// that comes after gets it too, without a second copy on the wire.
func TestStoreUncertainSentLater(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	m := Message{To: bob, ID: "later", Body: "hello"}
	tr := sentLater(t, c, pc, ls, m)
	again, err := c.Send(waitCtx(t), m)
	if err != nil || again != tr {
		t.Fatalf("retry of a message the client sent: %v, %v; want its tracker", again, err)
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "next"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "next" {
		t.Fatalf("the server got %s, want the next message: the message went out twice", e.String())
	}
	c.dur.mu.Lock()
	e := c.dur.unsure["later"]
	c.dur.mu.Unlock()
	if e == nil || !e.resolved {
		t.Fatalf("the message in doubt: %+v; want it kept as resolved", e)
	}
	closeNoPlacesOut(t, c) // the message found stored gave its place back
}

// TestStoreUncertainWindowEnded: the write-ahead stays in doubt past the
// message's window: Send gives up then, with ErrRecordUncertain and
// tracking.ErrTimedOut, and the record lands after. The client settles it
// TIMED_OUT, stamped with its deadline, as the next Dial would, and the
// application hears TIMED_OUT once; a retry gets ErrRecordSettled, not
// tracking.ErrDuplicateID.
func TestStoreUncertainWindowEnded(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	var timedOut atomic.Int32
	closed, heard := make(chan struct{}), make(chan struct{})
	c, pc := newPeer(t, Config{Store: ls, OnStateChange: func(t *tracking.MessageTracker, _, to tracking.MessageState, _ *tracking.Response) {
		switch {
		case t.ID() == "short" && to == tracking.TimedOut:
			if timedOut.Add(1) == 1 {
				close(heard)
			}
		case t.ID() == "barrier" && to == tracking.Closed:
			close(closed)
		}
	}})
	rounds := resolveRounds(c)
	m := Message{To: bob, ID: "short", Body: "hello", Window: 300 * time.Millisecond}
	_, err := c.Send(waitCtx(t), m)
	if !errors.Is(err, ErrRecordUncertain) || !errors.Is(err, tracking.ErrTimedOut) {
		t.Fatalf("Send in doubt past the window: %v; want ErrRecordUncertain and tracking.ErrTimedOut", err)
	}
	// Its tracker timed out, as any message's: the store is handed the
	// change, which finds no record yet; the record lands after.
	waitClosed(t, heard)
	if err := c.dur.flush(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	landAndAnswer(t, ls)
	var rec store.Record
	for rec.State != tracking.TimedOut {
		nextRound(t, rounds)
		if err := c.dur.flush(waitCtx(t)); err != nil {
			t.Fatal(err)
		}
		if rec, err = ls.Message(waitCtx(t), "short"); err != nil {
			t.Fatal(err)
		}
	}
	last := rec.History[len(rec.History)-1]
	if !rec.Settled || !last.At.Equal(rec.Deadline) {
		t.Fatalf("the record: %+v, last change %+v; want TIMED_OUT at its deadline %v", rec.Message, last, rec.Deadline)
	}
	_, err = c.Send(waitCtx(t), m)
	if !errors.Is(err, ErrRecordSettled) || errors.Is(err, tracking.ErrDuplicateID) || !strings.Contains(err.Error(), "TIMED_OUT") {
		t.Fatalf("retry of a message whose record timed out: %v; want ErrRecordSettled naming TIMED_OUT", err)
	}
	// Callbacks run in order: once the barrier's ran, so did every
	// TIMED_OUT of "short".
	sendBarrier(t, c, pc).Close()
	waitClosed(t, closed)
	if n := timedOut.Load(); n != 1 {
		t.Fatalf("the application heard TIMED_OUT %d times; want once", n)
	}
}

// TestStoreUncertainRetryMeetsResolver: the client's own look at the store
// (resolveDoubts) has found the message in doubt stored and tracks it when
// the application retries it: the retry waits for the look to end, then
// gets the tracker of the message the client sends; it goes out once.
func TestStoreUncertainRetryMeetsResolver(t *testing.T) {
	ls := &lateStore{Store: openStore(t), late: true, stuck: true}
	c, pc := newPeer(t, Config{Store: ls})
	m := Message{To: bob, ID: "race", Body: "hello"}
	if _, err := sendInDoubt(t, c, ls, m); !errors.Is(err, ErrRecordUncertain) {
		t.Fatalf("Send whose write-ahead stayed in doubt: %v; want ErrRecordUncertain", err)
	}
	// The client's look tracks the landed message, and waits there.
	tracked, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() { once.Do(func() { close(tracked); <-proceed }) }
	c.dur.trackedHook.Store(&hold)
	landAndAnswer(t, ls)
	waitClosed(t, tracked)
	// The retry comes now.
	type result struct {
		tr  *tracking.MessageTracker
		err error
	}
	waiting := make(chan struct{}, 1)
	hook := func() {
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	c.dur.claimHook.Store(&hook)
	res := make(chan result, 1)
	go func() {
		tr, err := c.Send(waitCtx(t), m)
		res <- result{tr, err}
	}()
	var r result
	select {
	case <-waiting: // it waits for the look to end
		close(proceed)
		r = <-res
	case r = <-res: // it did not wait
		close(proceed)
	case <-waitCtx(t).Done():
		t.Fatal("the retry did not return")
	}
	if r.err != nil || r.tr == nil || r.tr != c.Tracker("race") {
		t.Fatalf("retry while the client sends the message: %v, %v; want the tracker of the message sent", r.tr, r.err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "race" {
		t.Fatalf("the server got %s, want the message", e.String())
	}
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "next"}); err != nil {
		t.Fatal(err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "next" {
		t.Fatalf("the server got %s, want the next message: the message went out twice", e.String())
	}
}

// countStore is doubtStore counting the reads of messages.
type countStore struct {
	doubtStore
	reads atomic.Int32
}

func (s *countStore) Message(ctx context.Context, id string) (store.Record, error) {
	s.reads.Add(1)
	return s.doubtStore.Message(ctx, id)
}

// TestResolveBacksOff: a message in doubt that the store does not have is
// looked for again less and less often (2 s, 4 s, 8 s ...), and once more
// when its time ended, after which the client forgets it: a message whose
// window ended is kept doubtGrace after Send gave up on it.
func TestResolveBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := &countStore{}
		d, err := openDurable(context.Background(), cs, jid.MustParse("a@example.org/r"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		c := &Client{dur: d, ctx: context.Background(), log: slog.New(slog.DiscardHandler)}
		start := time.Now()
		doubtOne(d, store.Message{ID: "m", To: "b@example.org", Deadline: start.Add(20 * time.Second)})
		var readAt []time.Duration
		for time.Since(start) < 70*time.Second {
			before := cs.reads.Load()
			c.resolveDoubts()
			if cs.reads.Load() != before {
				readAt = append(readAt, time.Since(start))
			}
			time.Sleep(time.Second)
		}
		// The window ends at 20 s; the client keeps it a minute anyway.
		want := []time.Duration{0, 2 * time.Second, 6 * time.Second, 14 * time.Second, 30 * time.Second, time.Minute}
		if !slices.Equal(readAt, want) {
			t.Fatalf("the store was asked at %v; want %v", readAt, want)
		}
		d.mu.Lock()
		n := len(d.unsure)
		d.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d messages in doubt kept after their window ended", n)
		}
	})
}

// TestDoubtsBounded: the client keeps at most maxDoubts messages in doubt,
// and says so once.
func TestDoubtsBounded(t *testing.T) {
	var warned atomic.Int32
	log := slog.New(hookHandler{func(r slog.Record) {
		if strings.Contains(r.Message, "too many messages in doubt") {
			warned.Add(1)
		}
	}})
	d, err := openDurable(context.Background(), &doubtStore{}, jid.MustParse("a@example.org/r"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	for i := range maxDoubts + 10 {
		id := fmt.Sprint("m", i)
		doubtOne(d, store.Message{ID: id, To: "b@example.org"})
	}
	d.mu.Lock()
	n := len(d.unsure)
	d.mu.Unlock()
	if n != maxDoubts {
		t.Fatalf("%d messages in doubt kept; want at most %d", n, maxDoubts)
	}
	if w := warned.Load(); w != 1 {
		t.Fatalf("the bound was logged %d times; want once", w)
	}
}

// TestResolveOnBusyStream: the recorder starts its look at the messages in
// doubt also while changes keep coming so fast that it never waits for its
// tick.
func TestResolveOnBusyStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := &countStore{}
		d, err := openDurable(context.Background(), cs, jid.MustParse("a@example.org/r"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		ctx, cancel := context.WithCancel(context.Background())
		c := &Client{dur: d, ctx: ctx, log: slog.New(slog.DiscardHandler), sm: sm.New(sm.Config{})}
		d.client.Store(c)
		doubtOne(d, store.Message{ID: "m", To: "b@example.org"})
		stop := make(chan struct{})
		go func() {
			for {
				d.record("busy", tracking.DeliveredToServer, time.Now(), nil)
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		reads := cs.reads.Load()
		close(stop)
		cancel()
		c.workers.Wait()
		if reads == 0 {
			t.Fatal("the recorder did not look at the message in doubt while the stream was busy")
		}
	})
}

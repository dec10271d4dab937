package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// openStore opens an SQLite store for the test.
func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// faultyStore wraps a store: while failMessages or failChanges is set,
// commits of new messages or of changes fail; committed lists the ids of
// the messages committed so far.
type faultyStore struct {
	store.Store
	failMessages, failChanges atomic.Bool
	// doubt makes message commits fail with store.ErrOutcomeUnknown,
	// after committing them (doubtStored) or not (doubtLost).
	doubt        atomic.Int32
	changeFailed chan struct{} // gets a value (if there is room) when a change commit failed
	// cursorsUnknown makes every commit fail with store.ErrCursorsUnknown
	// after committing it; changeCommits counts the commits with changes.
	cursorsUnknown atomic.Bool
	changeCommits  atomic.Int32
	// lostDoubts counts the commits answered doubtLost; onSecondDoubt, if
	// set, runs at the second one (a test ends Send's ctx there, once Send
	// is surely in its loop of commits again).
	lostDoubts    atomic.Int32
	onSecondDoubt func()

	mu        sync.Mutex
	committed []string
}

var errDiskFull = errors.New("database or disk is full")

const (
	doubtStored = 1 + iota
	doubtLost
)

var errConnReset = errors.New("connection reset by peer")

func (f *faultyStore) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) > 0 && f.failMessages.Load() {
		return errDiskFull
	}
	if f.cursorsUnknown.Load() {
		if len(b.Changes) > 0 {
			f.changeCommits.Add(1)
		}
		if err := f.Store.Commit(ctx, b); err != nil {
			return err
		}
		return fmt.Errorf("%w: %w", store.ErrCursorsUnknown, errConnReset)
	}
	if len(b.Messages) > 0 && f.doubt.Load() == doubtLost {
		if f.lostDoubts.Add(1) == 2 && f.onSecondDoubt != nil {
			f.onSecondDoubt()
		}
		return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, errConnReset)
	}
	if len(b.Messages) > 0 && f.doubt.Load() == doubtStored {
		if err := f.Store.Commit(ctx, b); err != nil {
			return err
		}
		return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, errConnReset)
	}
	if len(b.Changes) > 0 && f.failChanges.Load() {
		select {
		case f.changeFailed <- struct{}{}:
		default:
		}
		return errDiskFull
	}
	if err := f.Store.Commit(ctx, b); err != nil {
		return err
	}
	f.mu.Lock()
	for _, m := range b.Messages {
		f.committed = append(f.committed, m.ID)
	}
	f.mu.Unlock()
	return nil
}

func (f *faultyStore) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.committed, id)
}

// callbackRan returns a channel closed once the callbacks of tr's change
// to state have run: the store has been handed the change by then.
func callbackRan(tr *tracking.MessageTracker, state tracking.MessageState) <-chan struct{} {
	ch := make(chan struct{})
	tr.OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
		if to == state {
			close(ch)
		}
	})
	return ch
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-waitCtx(t).Done():
		t.Fatal("the state change's callbacks did not run")
	}
}

func historyStates(h []store.Change) []tracking.MessageState {
	var out []tracking.MessageState
	for _, c := range h {
		out = append(out, c.State)
	}
	return out
}

// TestStoreWriteAhead: a message is in the store, with its stanza and
// channel, by the time the server reads it, and its state changes are recorded with their
// evidence; Status reads them back.
func TestStoreWriteAhead(t *testing.T) {
	fs := &faultyStore{Store: openStore(t)}
	c, pc := newPeer(t, Config{Store: fs})
	tr, err := c.Send(waitCtx(t), Message{To: bob, Body: "disk 91%", Thread: "th", Channel: "alerts"})
	if err != nil {
		t.Fatal(err)
	}
	e := pc.nextMessage(t)
	if !fs.has(e.attr("id")) {
		t.Fatal("the server read a message that was not in the store")
	}
	rec, err := fs.Message(waitCtx(t), tr.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rec.Raw), "disk 91%") || !strings.Contains(string(rec.Raw), tr.ID()) ||
		rec.To != bob.String() || rec.Thread != "th" || rec.Channel != "alerts" || rec.Owner.Account != "alice@localhost" || rec.Deadline.IsZero() {
		t.Errorf("stored message %+v (raw %s)", rec.Message, rec.Raw)
	}
	waitState(t, tr, tracking.DeliveredToServer)
	pc.send(`<message from='bob@example.org/pc' id='r1'><received xmlns='%s' id='%s'/></message>`, stanza.NSReceipts, tr.ID())
	waitState(t, tr, tracking.DeliveredToRecipient)
	seen := callbackRan(tr, tracking.SeenByRecipient)
	pc.send(`<message from='bob@example.org/pc' id='d1'><displayed xmlns='%s' id='%s'/></message>`, stanza.NSMarkers, tr.ID())
	waitClosed(t, seen)
	st, err := c.Status(waitCtx(t), tr.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient}
	if got := historyStates(st.History); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if st.State != tracking.SeenByRecipient || !st.Settled {
		t.Errorf("status %+v", st)
	}
	if from := st.History[2].From; from != "bob@example.org/pc" {
		t.Errorf("receipt evidence from %q", from)
	}
	// The record stays readable after the tracker is gone.
	if c.Tracker(tr.ID()) != nil {
		t.Fatal("settled tracker still pending")
	}
	if _, err := c.Status(waitCtx(t), "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	// The id of a settled message stays taken while the store keeps it.
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: tr.ID()}); !errors.Is(err, tracking.ErrDuplicateID) || !errors.Is(err, store.ErrExists) {
		t.Errorf("Send with the id of a stored message: %v", err)
	}
}

// holdRecorder holds c's recorder at its next round, after it took the
// stream-management state and before it commits (takenHook, at most
// sessionEvery away), until release is called (or the test ends). A
// success of the recorder clears Stats().StoreErr, and the state keeps
// changing after Dial (the carbons IQ's result, an <a/>): the tests that
// check StoreErr after a failed write hold it from before the store
// fails until after the check.
func holdRecorder(t *testing.T, c *Client) (release func()) {
	t.Helper()
	held, free := make(chan struct{}), make(chan struct{})
	var hold, done sync.Once
	hook := func() {
		hold.Do(func() {
			close(held)
			<-free
		})
	}
	c.dur.takenHook.Store(&hook)
	release = func() { done.Do(func() { close(free) }) }
	t.Cleanup(release)
	select {
	case <-held:
	case <-waitCtx(t).Done():
		t.Fatal("the recorder did not start a round")
	}
	return release
}

// TestStoreWriteAheadFails: when the store cannot take the message (a full
// disk), Send fails and writes nothing; once the store works again, Send
// works again.
func TestStoreWriteAheadFails(t *testing.T) {
	fs := &faultyStore{Store: openStore(t)}
	c, pc := newPeer(t, Config{Store: fs})
	release := holdRecorder(t, c)
	fs.failMessages.Store(true)
	tr, err := c.Send(waitCtx(t), Message{To: bob, ID: "lost"})
	if !errors.Is(err, errDiskFull) || !errors.Is(err, ErrNotRecorded) {
		t.Fatalf("Send with a full store: %v", err)
	}
	if tr != nil {
		t.Fatalf("Send with a full store returned a tracker in %s; want nil (nothing written)", tr.State())
	}
	if c.Tracker("lost") != nil || c.Stats().Pending != 0 {
		t.Fatalf("the message that was not recorded is tracked: %+v", c.Stats())
	}
	if err := c.Stats().StoreErr; !errors.Is(err, errDiskFull) {
		t.Fatalf("Stats().StoreErr = %v", err)
	}
	release()
	fs.failMessages.Store(false)
	if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "kept"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Stats().StoreErr; err != nil {
		t.Fatalf("Stats().StoreErr after a good write: %v", err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "kept" {
		t.Fatalf("the server got %s: a message that was not written ahead went out", e.String())
	}
}

// TestStoreWriteAheadInDoubt: the store cannot tell whether it recorded
// the message (its connection broke during the commit). Send reads it
// back: stored, it is sent and tracked; not found until ctx ends, Send
// reports ErrRecordUncertain, not ErrNotRecorded (which says that nothing
// was recorded), and writes nothing.
func TestStoreWriteAheadInDoubt(t *testing.T) {
	fs := &faultyStore{Store: openStore(t)}
	c, pc := newPeer(t, Config{Store: fs})
	release := holdRecorder(t, c)
	// Send tries again while ctx allows: ctx ends at its second try (this
	// store never answers anything definite).
	ctx, cancel := context.WithCancel(waitCtx(t))
	defer cancel()
	fs.onSecondDoubt = cancel
	fs.doubt.Store(doubtLost)
	tr, err := c.Send(ctx, Message{To: bob, ID: "maybe"})
	if tr != nil || !errors.Is(err, ErrRecordUncertain) || errors.Is(err, ErrNotRecorded) || !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Send whose write-ahead is in doubt and not found: %v, %v; want a nil tracker and ErrRecordUncertain only", tr, err)
	}
	if err := c.Stats().StoreErr; !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("Stats().StoreErr = %v", err)
	}
	release()
	fs.doubt.Store(doubtStored)
	tr, err = c.Send(waitCtx(t), Message{To: bob, ID: "stored"})
	if err != nil || tr == nil {
		t.Fatalf("Send whose write-ahead is in doubt but stored: %v, %v; want it sent", tr, err)
	}
	if err := c.Stats().StoreErr; err != nil {
		t.Fatalf("Stats().StoreErr after the message was found stored: %v", err)
	}
	if e := pc.nextMessage(t); e.attr("id") != "stored" {
		t.Fatalf("the server got %s, want the stored message only", e.String())
	}
}

// TestStoreRecorderRetries: while the store refuses changes, tracking goes
// on in memory; the changes are written, in order, once it works again.
func TestStoreRecorderRetries(t *testing.T) {
	fs := &faultyStore{Store: openStore(t), changeFailed: make(chan struct{}, 1)}
	c, pc := newPeer(t, Config{Store: fs})
	fs.failChanges.Store(true)
	tr := sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	seen := callbackRan(tr, tracking.DeliveredToRecipient)
	pc.send(`<message from='bob@example.org/pc' id='r1'><received xmlns='%s' id='%s'/></message>`, stanza.NSReceipts, tr.ID())
	waitClosed(t, seen)
	select {
	case <-fs.changeFailed:
	case <-waitCtx(t).Done():
		t.Fatal("the recorder did not try")
	}
	if rec, err := fs.Message(waitCtx(t), tr.ID()); err != nil || rec.State != tracking.InTransit {
		t.Fatalf("while the store refused changes: %v, %v", rec.State, err)
	}
	fs.failChanges.Store(false)
	st, err := c.Status(waitCtx(t), tr.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient}
	if got := historyStates(st.History); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
}

// TestStoreCursorsUnknown: the store committed a batch but lost its
// cursors (store.ErrCursorsUnknown). The write-ahead counts as stored, and
// the recorder takes its batch as committed: it does not commit it again.
func TestStoreCursorsUnknown(t *testing.T) {
	fs := &faultyStore{Store: openStore(t)}
	c, pc := newPeer(t, Config{Store: fs})
	fs.cursorsUnknown.Store(true)
	tr := sendAcked(t, c, Message{To: bob})
	pc.nextMessage(t)
	seen := callbackRan(tr, tracking.DeliveredToRecipient)
	pc.send(`<message from='bob@example.org/pc' id='r1'><received xmlns='%s' id='%s'/></message>`, stanza.NSReceipts, tr.ID())
	waitClosed(t, seen)
	st, err := c.Status(waitCtx(t), tr.ID())
	if err != nil {
		t.Fatal(err)
	}
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient}
	if got := historyStates(st.History); !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	if err := c.Stats().StoreErr; err != nil {
		t.Fatalf("Stats().StoreErr after commits that were stored: %v", err)
	}
	if n := fs.changeCommits.Load(); n > 2 {
		t.Fatalf("%d commits of changes for the ack and the receipt: a stored batch was committed again", n)
	}
}

// TestStoreLease: a second client of the same account and resource on the
// same store is refused while the first one lives, and accepted after it
// closed.
func TestStoreLease(t *testing.T) {
	st := openStore(t)
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{Store: st})
	cfg := Config{Store: st, Addr: srv.l.Addr().String()}
	_, err := Dial(waitCtx(t), testJID, peerPassword, &cfg)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second client: %v, want ErrLocked", err)
	}
	// One sentence that names the instance and the holder.
	if want := "store: " + testJID.String() + " is locked by another client of this store"; err.Error() != want {
		t.Errorf("second client's error:\n%s\nwant\n%s", err, want)
	}
	c.Close()
	dialPeer(t, srv, Config{Store: st})
}

// TestStoreDialSavesStream: when Dial returns, the store holds the new
// stream's state, so a process killed at once leaves its successor a
// stream to resume; Dial waits for a slow commit of it.
func TestStoreDialSavesStream(t *testing.T) {
	st := openStore(t)
	c, _ := newPeer(t, Config{Store: slowSessions{st}})
	sess, err := st.Session(waitCtx(t), c.dur.owner)
	if err != nil {
		t.Fatalf("stored stream after Dial: %v", err)
	}
	if r := c.sm.Resumption(); r.ID == "" || sess.ID != r.ID || sess.JID != r.JID.String() {
		t.Errorf("stored stream %q of %q after Dial, want %q of %q", sess.ID, sess.JID, r.ID, r.JID)
	}
}

// slowSessions is a store whose commits of stream-management state take
// 20 ms longer (a busy disk).
type slowSessions struct{ store.Store }

func (s slowSessions) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Sessions) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	return s.Store.Commit(ctx, b)
}

// TestStoreCloseKeepsPending: closing the client leaves its unacknowledged
// messages pending in the store (for the next process), while a tracker
// the application closed is recorded CLOSED.
func TestStoreCloseKeepsPending(t *testing.T) {
	st := openStore(t)
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.noAcks = true })
	c := dialPeer(t, srv, Config{Store: st})
	pc := srv.next(t)
	closed, err := c.Send(waitCtx(t), Message{To: bob})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.Send(waitCtx(t), Message{To: bob})
	if err != nil {
		t.Fatal(err)
	}
	pc.nextMessage(t)
	pc.nextMessage(t)
	// The store records a change when its callbacks run, right before the
	// tracker's own.
	seen := callbackRan(closed, tracking.Closed)
	closed.Close()
	waitClosed(t, seen)
	if s, err := c.Status(waitCtx(t), closed.ID()); err != nil || s.State != tracking.Closed || !s.Settled {
		t.Fatalf("closed by the application: %+v, %v", s, err)
	}
	c.Close()
	rec, err := st.Message(waitCtx(t), kept.ID())
	if err != nil || rec.State != tracking.InTransit || rec.Settled || len(rec.Raw) == 0 {
		t.Fatalf("after Close: %+v, %v", rec.Message, err)
	}
}

// TestStatusWithoutStore answers for pending messages only.
func TestStatusWithoutStore(t *testing.T) {
	c, _ := newPeer(t, Config{})
	tr, err := c.Send(waitCtx(t), Message{To: bob})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(waitCtx(t), tr.ID())
	if err != nil || !st.Pending || st.History != nil {
		t.Fatalf("pending: %+v, %v", st, err)
	}
	if _, err := c.Status(waitCtx(t), "unknown"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}

// TestStoreCloseIsNotFinal: with a store, the CLOSED change that closing
// the client makes reaches OnStateChange marked as not final
// (ErrStillPending) and is not recorded; a tracker the application closes
// is final and recorded, also when its callback runs once Close started
// (the change was made before).
func TestStoreCloseIsNotFinal(t *testing.T) {
	st := openStore(t)
	type closed struct {
		id   string
		resp *tracking.Response
	}
	got := make(chan closed, 2)
	release, blocked := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c, _ := newPeer(t, Config{Store: st, OnStateChange: func(tr *tracking.MessageTracker, _, to tracking.MessageState, resp *tracking.Response) {
		if to == tracking.Closed {
			once.Do(func() {
				close(blocked)
				<-release
			})
			got <- closed{tr.ID(), resp}
		}
	}})
	a, err := c.Send(waitCtx(t), Message{To: bob, Body: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Send(waitCtx(t), Message{To: bob, Body: "b"})
	if err != nil {
		t.Fatal(err)
	}
	a.Close() // its callback holds the others
	<-blocked
	ended := make(chan struct{})
	go func() {
		c.Close()
		close(ended)
	}()
	<-b.Done() // closed by Close, while a's callback still runs
	close(release)
	for _, want := range []struct {
		id    string
		final bool
	}{{a.ID(), true}, {b.ID(), false}} {
		g := <-got
		switch {
		case g.id != want.id:
			t.Fatalf("CLOSED of %s, want %s", g.id, want.id)
		case want.final && g.resp != nil:
			t.Errorf("CLOSED by the application: response %+v, want nil", g.resp)
		case !want.final && (g.resp == nil || !errors.Is(g.resp.Err, ErrStillPending)):
			t.Errorf("CLOSED by closing the client: response %+v, want Err matching ErrStillPending", g.resp)
		}
	}
	<-ended
	if got := stateIn(t, st, a.ID()); got != tracking.Closed {
		t.Errorf("the store has a %v, want CLOSED", got)
	}
	if got := stateIn(t, st, b.ID()); got == tracking.Closed {
		t.Error("the store has b CLOSED by closing the client, want it pending")
	}
}

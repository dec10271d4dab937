package gateway

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// countWrites is a store that counts the writes made through it.
type countWrites struct {
	store.Store
	n atomic.Int64
}

func (s *countWrites) Commit(ctx context.Context, b *store.Batch) error {
	s.n.Add(1)
	return s.Store.Commit(ctx, b)
}

func (s *countWrites) ClaimKey(ctx context.Context, k store.Key) (string, bool, error) {
	s.n.Add(1)
	return s.Store.ClaimKey(ctx, k)
}

func (s *countWrites) PutJob(ctx context.Context, j store.Job) error {
	s.n.Add(1)
	return s.Store.PutJob(ctx, j)
}

func (s *countWrites) DeleteJob(ctx context.Context, q, name string) (bool, error) {
	s.n.Add(1)
	return s.Store.DeleteJob(ctx, q, name)
}

// TestReadsWriteNothing: with a store, GET of an unknown, a scheduled or a
// sent message, and a DELETE refused for a message that is not scheduled,
// write nothing to the store.
func TestReadsWriteNothing(t *testing.T) {
	st := &countWrites{Store: openSQLite(t)}
	f := newFixture(t, Config{Store: st})
	sent := f.send(`{"to":"bob@example.org","body":"now"}`)
	later := f.send(`{"to":"bob@example.org","body":"later","send_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
	before := st.n.Load()
	if code, _, b := f.do("GET", "/v1/messages/no-such-id", ""); code != 404 {
		t.Fatalf("GET unknown: %d %s", code, b)
	}
	f.status(sent.ID)
	if s := f.status(later.ID); s.SendAt == nil {
		t.Fatalf("scheduled: %+v", s)
	}
	if code, _, b := f.do("DELETE", "/v1/messages/"+sent.ID, ""); code != 409 {
		t.Fatalf("DELETE of a sent message: %d %s", code, b)
	}
	if code, _, b := f.do("DELETE", "/v1/messages/no-such-id", ""); code != 404 {
		t.Fatalf("DELETE unknown: %d %s", code, b)
	}
	if n := st.n.Load() - before; n != 0 {
		t.Fatalf("%d writes to the store", n)
	}
}

// runDue has g's scheduler send the jobs due at at, as a gateway does when
// they are due.
func runDue(t *testing.T, g *Gateway, st store.Store, at time.Time) int {
	t.Helper()
	jobs, err := st.ClaimJobs(context.Background(), sendQueue, at, jobLease, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		g.sched.(*jobScheduler).send(context.Background(), j)
	}
	return len(jobs)
}

// TestScheduledKeepsSendAt: with a store, a scheduled message shows its
// send_at and the time it was accepted after it was sent, and after it was
// cancelled, as before (and as in memory).
func TestScheduledKeepsSendAt(t *testing.T) {
	st := openSQLite(t)
	f := newFixture(t, Config{Store: st})
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	body := `{"to":"bob@example.org","body":"later","send_at":"` + at.Format(time.RFC3339) + `"}`
	sent := f.send(body)
	cancelled := f.send(body)
	accepted := f.status(sent.ID).Created
	if code, _, b := f.do("DELETE", "/v1/messages/"+cancelled.ID, ""); code != 200 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	if n := runDue(t, f.g, st, at.Add(time.Second)); n != 1 || f.fake.count() != 1 {
		t.Fatalf("%d jobs due, %d sent", n, f.fake.count())
	}
	s := f.status(sent.ID)
	if s.SendAt == nil || !s.SendAt.Equal(at) || !s.Created.Equal(accepted) || len(s.History) != 1 || s.Cursor == 0 {
		t.Errorf("sent: %+v (send_at %v, accepted %v)", s, s.SendAt, accepted)
	}
	c := f.status(cancelled.ID)
	if c.SendAt == nil || !c.SendAt.Equal(at) || c.State.String() != "CLOSED" {
		t.Errorf("cancelled: %+v", c)
	}
}

// sendOnPut is a store that runs a scheduled message's job as soon as it is
// put, as a gateway does with a message due at once.
type sendOnPut struct {
	store.Store
	g *Gateway
	t *testing.T
}

func (s *sendOnPut) PutJob(ctx context.Context, j store.Job) error {
	if err := s.Store.PutJob(ctx, j); err != nil {
		return err
	}
	if j.Queue == sendQueue && s.g != nil {
		runDue(s.t, s.g, s.Store, j.Due)
	}
	return nil
}

// TestScheduledCursor: the cursor answering a scheduled message comes
// before its changes, even when it is sent at once; a replay under its
// Idempotency-Key answers the head, not 0, while it is not sent.
func TestScheduledCursor(t *testing.T) {
	st := &sendOnPut{Store: openSQLite(t), t: t}
	f := newFixture(t, Config{Store: st})
	st.g = f.g
	f.send(`{"to":"bob@example.org","body":"first"}`)
	r := f.send(`{"to":"bob@example.org","body":"soon","send_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
	rec, err := st.Message(context.Background(), r.ID)
	if err != nil {
		t.Fatalf("not sent at once: %v", err)
	}
	if r.Cursor >= Cursor(rec.History[0].Cursor) {
		t.Errorf("answer's cursor %d, the message's creation %d: following from the answer misses it", r.Cursor, rec.History[0].Cursor)
	}

	st.g = nil // no longer sent at once
	body := `{"to":"bob@example.org","body":"later","send_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	a := f.send(body, "Idempotency-Key", "k")
	head, _ := f.g.rec.head(context.Background())
	b := f.send(body, "Idempotency-Key", "k")
	if a.ID != b.ID || b.Cursor != head || head == 0 {
		t.Errorf("replay %+v, first %+v, head %d", b, a, head)
	}
}

// raceOneKey runs two requests with one Idempotency-Key whose sends
// overlap: the first registers its send first but records the message
// after the second, then fails with firstErr (nil: the store's duplicate).
// It returns both answers.
func raceOneKey(t *testing.T, f *fixture, firstErr error) (a, b result) {
	t.Helper()
	aIn, aGo := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	f.fake.beforeCommit = func() error {
		if calls.Add(1) == 1 {
			close(aIn)
			<-aGo
			return firstErr
		}
		return nil
	}
	hold, held := make(chan struct{}), make(chan struct{})
	f.fake.hold, f.fake.held = hold, held
	body := `{"to":"bob@example.org","body":"once"}`
	post := func(out chan<- result) {
		code, h, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "k")
		out <- result{code, h.Get("Idempotent-Replayed"), b}
	}
	ac, bc := make(chan result, 1), make(chan result, 1)
	go post(ac)
	<-aIn // the first is sending, not recorded
	go post(bc)
	<-held // the second recorded it, not tracked yet
	close(aGo)
	a = <-ac // the first finds the id taken
	close(hold)
	b = <-bc
	return a, b
}

type result struct {
	code     int
	replayed string
	body     []byte
}

// TestIdempotencyRaceKeepsTracker: of two requests with one key, the one
// that registered its send first but lost the store's id to the other
// leaves the other's tracker registered (and replays it).
func TestIdempotencyRaceKeepsTracker(t *testing.T) {
	f := newFixture(t, Config{Store: openSQLite(t)})
	a, b := raceOneKey(t, f, nil)
	var ra, rb sendResponse
	mustJSON(t, a.body, &ra)
	mustJSON(t, b.body, &rb)
	if a.code != 202 || a.replayed != "true" || b.code != 202 || ra.ID != rb.ID || f.fake.count() != 1 {
		t.Fatalf("first %d %s, second %d %s, %d sent", a.code, a.body, b.code, b.body, f.fake.count())
	}
	f.g.mu.Lock()
	lm, ok := f.g.live[rb.ID]
	f.g.mu.Unlock()
	if !ok || lm.t == nil || lm.t != f.fake.tracker(rb.ID) || lm.sends != 0 {
		t.Fatalf("live entry of the sent message: %+v %v", lm, ok)
	}
	if rb.Cursor == 0 {
		t.Errorf("second answer without cursor: %+v", rb)
	}
}

// TestIdempotencyRaceFailedSend: of two requests with one key, one whose
// send fails before tracking (not connected, say) while the other sent the
// message does not mark that message ABORTED: it replays it.
func TestIdempotencyRaceFailedSend(t *testing.T) {
	f := newFixture(t, Config{Store: openSQLite(t)})
	a, b := raceOneKey(t, f, errTest)
	var ra, rb sendResponse
	mustJSON(t, b.body, &rb)
	if b.code != 202 {
		t.Fatalf("second: %d %s", b.code, b.body)
	}
	if a.code != 202 || a.replayed != "true" {
		t.Errorf("first: %d %s", a.code, a.body)
	} else if mustJSON(t, a.body, &ra); ra.ID != rb.ID {
		t.Errorf("first %+v, second %+v", ra, rb)
	}
	f.fake.tracker(rb.ID).Advance(tracking.DeliveredToServer, nil)
	if s := f.waitState(rb.ID, tracking.DeliveredToServer); len(s.History) != 2 {
		t.Fatalf("history %+v", s.History)
	}
}

// failNewOnce is a store whose next commit of a new message fails.
type failNewOnce struct {
	store.Store
	fail atomic.Bool
}

func (s *failNewOnce) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) > 0 && s.fail.CompareAndSwap(true, false) {
		return errTest
	}
	return s.Store.Commit(ctx, b)
}

// TestScheduledNotRecordedRetried: a scheduled message whose send found the
// store failing (its client could not record it, so did not send it) keeps
// its job: it is sent after the lease, not lost.
func TestScheduledNotRecordedRetried(t *testing.T) {
	st := &failNewOnce{Store: openSQLite(t)}
	f := newFixture(t, Config{Store: st})
	at := time.Now().Add(time.Hour)
	r := f.send(`{"to":"bob@example.org","body":"later","send_at":"` + at.UTC().Format(time.RFC3339) + `"}`)
	st.fail.Store(true)
	if n := runDue(t, f.g, st, at); n != 1 || f.fake.count() != 0 {
		t.Fatalf("%d due, %d sent", n, f.fake.count())
	}
	if n := runDue(t, f.g, st, at.Add(2*jobLease)); n != 1 || f.fake.count() != 1 {
		t.Fatalf("after the lease: %d due, %d sent", n, f.fake.count())
	}
	if s := f.status(r.ID); s.State.String() != "IN_TRANSIT" || s.Cursor == 0 {
		t.Fatalf("%+v", s)
	}
	if n := runDue(t, f.g, st, at.Add(4*jobLease)); n != 0 {
		t.Fatalf("%d jobs left", n)
	}
}

// TestScheduledForeignAccount: a gateway that claims a scheduled message of
// an account it does not have (another instance's, or one not added yet)
// hands it back at once rather than holding it for the lease.
func TestScheduledForeignAccount(t *testing.T) {
	st := openSQLite(t)
	f := newFixture(t, Config{Store: st})
	at := time.Now().Add(time.Hour)
	f.send(`{"to":"bob@example.org","body":"later","send_at":"` + at.UTC().Format(time.RFC3339) + `"}`)
	// Another gateway without the account, whose clock is at send_at (so
	// that this one's own runner leaves the job to the test).
	other := &Gateway{log: slog.New(slog.DiscardHandler),
		now: func() time.Time { return at }}
	other.sched = &jobScheduler{g: other, s: st}
	if n := runDue(t, other, st, at); n != 1 {
		t.Fatalf("%d due", n)
	}
	if n := runDue(t, f.g, st, at.Add(2*handBack)); n != 1 || f.fake.count() != 1 {
		t.Fatalf("the account's gateway: %d due, %d sent", n, f.fake.count())
	}
}

// failFirstHookAdd is a store whose first AddJob of a webhook cursor fails.
type failFirstHookAdd struct {
	store.Store
	failed atomic.Bool
}

func (s *failFirstHookAdd) AddJob(ctx context.Context, j store.Job) (bool, error) {
	if strings.HasPrefix(j.Queue, hookScope+":") && s.failed.CompareAndSwap(false, true) {
		return false, errTest
	}
	return s.Store.AddJob(ctx, j)
}

// TestOutboxFirstJobRetried: the first gateway on a store claims a
// webhook's key, then creates its cursor job; when that fails, it creates
// it on its next attempt (the key alone would stop every delivery).
func TestOutboxFirstJobRetried(t *testing.T) {
	st := &failFirstHookAdd{Store: openSQLite(t)}
	f := newFixture(t, Config{Store: st})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sleeps := 0
	w := &webhookWorker{g: f.g, name: "test", after: 7, sleep: func(ctx context.Context, _ time.Duration) error {
		if sleeps++; sleeps == 3 {
			cancel()
		}
		return ctx.Err()
	}}
	o := &outbox{s: st, name: "hook", now: time.Now}
	c, err := o.acquire(ctx, w)
	if err != nil || c != 7 {
		t.Fatalf("acquire: %v %v after %d attempts", c, err, sleeps)
	}
}

// failCloseOnce is a store whose first commit of a CLOSED change fails.
type failCloseOnce struct {
	store.Store
	failed atomic.Bool
}

func (s *failCloseOnce) Commit(ctx context.Context, b *store.Batch) error {
	for _, c := range b.Changes {
		if c.State == tracking.Closed && s.failed.CompareAndSwap(false, true) {
			return errTest
		}
	}
	return s.Store.Commit(ctx, b)
}

// TestCancelRetried: a DELETE that decided to cancel a scheduled message
// but could not record it (503) is completed by the next DELETE; the
// message is never sent.
func TestCancelRetried(t *testing.T) {
	st := &failCloseOnce{Store: openSQLite(t)}
	f := newFixture(t, Config{Store: st})
	at := time.Now().Add(time.Hour)
	r := f.send(`{"to":"bob@example.org","body":"later","send_at":"` + at.UTC().Format(time.RFC3339) + `"}`)
	if code, _, b := f.do("DELETE", "/v1/messages/"+r.ID, ""); code != 503 {
		t.Fatalf("first DELETE: %d %s", code, b)
	}
	if code, _, b := f.do("DELETE", "/v1/messages/"+r.ID, ""); code != 200 {
		t.Fatalf("second DELETE: %d %s", code, b)
	}
	if s := f.status(r.ID); s.State.String() != "CLOSED" || !s.Settled {
		t.Fatalf("%+v", s)
	}
	if code, _, b := f.do("DELETE", "/v1/messages/"+r.ID, ""); code != 409 {
		t.Fatalf("third DELETE: %d %s", code, b)
	}
	if n := runDue(t, f.g, st, at.Add(time.Second)); n != 0 || f.fake.count() != 0 {
		t.Fatalf("%d due, %d sent", n, f.fake.count())
	}
}

// cancelOnRead is a store on which another DELETE cancels and records a
// scheduled message while this one checks it.
type cancelOnRead struct {
	store.Store
	g     *Gateway
	armed atomic.Bool
}

func (s *cancelOnRead) Key(ctx context.Context, scope, name string) (string, bool, error) {
	if scope == scheduledScope && s.armed.CompareAndSwap(true, false) {
		st, err := s.g.rec.status(ctx, name)
		if err == nil {
			if ok, err := s.g.sched.cancel(ctx, st); ok && err == nil {
				_, err = s.g.rec.settle(ctx, st, Change{State: State(tracking.Closed), At: time.Now()})
			}
		}
		if err != nil {
			return "", false, err
		}
	}
	return s.Store.Key(ctx, scope, name)
}

// TestCancelConcurrent: of two DELETEs of one scheduled message, the one
// that finds it recorded CLOSED by the other answers 200 CLOSED too.
func TestCancelConcurrent(t *testing.T) {
	st := &cancelOnRead{Store: openSQLite(t)}
	f := newFixture(t, Config{Store: st})
	st.g = f.g
	r := f.send(`{"to":"bob@example.org","body":"later","send_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`)
	st.armed.Store(true)
	code, _, b := f.do("DELETE", "/v1/messages/"+r.ID, "")
	var resp sendResponse
	mustJSON(t, b, &resp)
	if code != 200 || resp.State.String() != "CLOSED" || resp.Cursor == 0 || st.armed.Load() {
		t.Fatalf("DELETE: %d %s", code, b)
	}
}

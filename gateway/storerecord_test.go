package gateway

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStoreRecordIsTheClients: with a store, the account's client records
// a message sent through the gateway (the gateway writes nothing of its
// own for it), so that a change the client records after the gateway was
// closed is what a new gateway on the store answers. The answer's cursor is
// the record's, whether the client records through ClientStore or in
// Config.Store.
func TestStoreRecordIsTheClients(t *testing.T) {
	t.Run("ClientStore", func(t *testing.T) { testStoreRecordIsTheClients(t, false) })
	t.Run("Config.Store", func(t *testing.T) { testStoreRecordIsTheClients(t, true) })
}

func testStoreRecordIsTheClients(t *testing.T, plain bool) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t, Config{Store: st})
	f.fake.plainStore = plain
	f.send(`{"to":"bob@example.org","body":"an earlier one"}`) // cursor 1
	r := f.send(`{"to":"bob@example.org","body":"before the restart","channel":"ops"}`)
	rec, err := st.Message(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Owner.Resource != "fake" || rec.Channel != "ops" || r.Cursor != Cursor(rec.Cursor) {
		t.Fatalf("the record is not the client's: %+v, answer %+v", rec.Message, r)
	}
	f.g.Close()

	g2, err := New(Config{Store: st, Tokens: []string{testToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	f.fake.tracker(r.ID).Advance(tracking.DeliveredToServer, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, reached := g2.waitState(ctx, r.ID, tracking.DeliveredToServer)
	if !reached || len(s.History) != 2 || s.Channel != "ops" {
		t.Fatalf("after the restart: %+v", s)
	}
}

// failFirstCreate is a store whose first commit of a new message fails.
type failFirstCreate struct {
	store.Store
	failed atomic.Bool
}

func (s *failFirstCreate) Commit(ctx context.Context, b *store.Batch) error {
	if len(b.Messages) > 0 && s.failed.CompareAndSwap(false, true) {
		return errTest
	}
	return s.Store.Commit(ctx, b)
}

// TestIdempotencyAfterFailedCreate: when recording a message fails after
// its Idempotency-Key was claimed, a retry with the key sends it (once), not
// a replay of nothing.
func TestIdempotencyAfterFailedCreate(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t, Config{Store: &failFirstCreate{Store: st}})
	body := `{"to":"bob@example.org","body":"once"}`
	if code, _, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "k"); code != 503 {
		t.Fatalf("first attempt: %d %s", code, b)
	}
	a := f.send(body, "Idempotency-Key", "k")
	b := f.send(body, "Idempotency-Key", "k")
	if f.fake.count() != 1 || a.ID != b.ID || f.fake.sent[0].ID != a.ID {
		t.Fatalf("%d sends, ids %s %s", f.fake.count(), a.ID, b.ID)
	}
	if st := f.status(a.ID); st.State.String() != "IN_TRANSIT" {
		t.Fatalf("status %+v", st)
	}
}

// failPutJob is a store that cannot schedule.
type failPutJob struct{ store.Store }

func (failPutJob) PutJob(context.Context, store.Job) error { return errTest }

// TestScheduleFailure: a message that could not be scheduled is recorded
// ABORTED, and a retry under its key says so rather than IN_TRANSIT for ever.
func TestScheduleFailure(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t, Config{Store: failPutJob{st}})
	body := `{"to":"bob@example.org","body":"later","send_at":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`
	code, h, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "k")
	p := problemOf(t, h, b)
	if code != 503 || p.ID == "" || p.State != "ABORTED" {
		t.Fatalf("%d %s", code, b)
	}
	if r := f.send(body, "Idempotency-Key", "k"); r.ID != p.ID || r.State.String() != "ABORTED" {
		t.Fatalf("retry: %+v", r)
	}
}

// TestIdempotencyConcurrent: with a store, a request whose Idempotency-Key
// another request is still sending under (the message is recorded, not yet
// answered) gets that message, marked as a replay; one message is sent.
func TestIdempotencyConcurrent(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t, Config{Store: st})
	hold, held := make(chan struct{}), make(chan struct{})
	f.fake.hold, f.fake.held = hold, held
	body := `{"to":"bob@example.org","body":"once"}`
	first := make(chan []byte, 1)
	go func() {
		_, _, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "k")
		first <- b
	}()
	<-held // the first is recorded, not answered
	code, h, b := f.do("POST", "/v1/messages", body, "Idempotency-Key", "k")
	close(hold)
	var a, r sendResponse
	mustJSON(t, <-first, &a)
	mustJSON(t, b, &r)
	if code != 202 || h.Get("Idempotent-Replayed") != "true" || r.ID != a.ID || f.fake.count() != 1 {
		t.Fatalf("second: %d %s, first %+v, %d sent", code, b, a, f.fake.count())
	}
}

// shortPages is a store whose feed pages hold at most n changes, whatever
// the limit asked.
type shortPages struct {
	store.Store
	n int
}

func (s shortPages) Changes(ctx context.Context, q store.FeedQuery) ([]store.Change, error) {
	cs, err := s.Store.Changes(ctx, q)
	return cs[:min(len(cs), s.n)], err
}

// TestFeedShortPages: a store that returns fewer changes than asked does
// not make the feed skip the rest: following the cursors of GET /v1/events
// (with and without a channel filter) yields every change.
func TestFeedShortPages(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t, Config{Store: shortPages{Store: st, n: 2}})
	var want, wantA []string
	for i := range 7 {
		ch := "b"
		if i%2 == 0 {
			ch = "a"
		}
		r := f.send(`{"to":"bob@example.org","body":"m","channel":"` + ch + `"}`)
		want = append(want, r.ID)
		if ch == "a" {
			wantA = append(wantA, r.ID)
		}
	}
	follow := func(query string) (ids []string) {
		after := Cursor(0)
		for range 20 {
			var er eventsResponse
			code, _, body := f.do("GET", "/v1/events?wait=0s&after="+after.String()+query, "")
			mustJSON(t, body, &er)
			if code != 200 {
				t.Fatalf("GET /v1/events: %d %s", code, body)
			}
			for _, ev := range er.Events {
				ids = append(ids, ev.ID)
			}
			if len(er.Events) == 0 {
				return ids
			}
			after = er.Cursor
		}
		t.Fatal("the feed never ends")
		return nil
	}
	if got := follow(""); !slices.Equal(got, want) {
		t.Errorf("feed: %v\nwant %v", got, want)
	}
	if got := follow("&channels=a"); !slices.Equal(got, wantA) {
		t.Errorf("channel a: %v\nwant %v", got, wantA)
	}
}

// cursorsLost is a store whose commits lose their cursors: they are
// stored, and fail with store.ErrCursorsUnknown.
type cursorsLost struct{ store.Store }

func (s cursorsLost) Commit(ctx context.Context, b *store.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	for i := range b.Messages {
		b.Messages[i].Cursor = 0
	}
	for i := range b.Changes {
		b.Changes[i].Cursor = 0
	}
	return store.ErrCursorsUnknown
}

// TestStoreRecordCursorsLost: a change the store committed but whose
// cursor it lost (store.ErrCursorsUnknown) is recorded: its event has the
// cursor read back, and a repeat of it is still not applied.
func TestStoreRecordCursorsLost(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := &storeRecord{s: cursorsLost{st}, now: time.Now}
	s := &Status{ID: "lost1", From: "a@example.org", To: "b@example.org", Created: time.Now()}
	ev, err := r.settle(ctx, s, Change{State: State(tracking.Closed), At: time.Now()})
	if err != nil {
		t.Fatalf("settle whose cursors were lost: %v", err)
	}
	rec, err := st.Message(ctx, "lost1")
	if err != nil || len(rec.History) != 2 || ev.Cursor != Cursor(rec.History[1].Cursor) || ev.Cursor == 0 {
		t.Fatalf("event %+v for the record %+v (%v)", ev, rec, err)
	}
	if _, err := r.change(ctx, "lost1", Change{State: State(tracking.DeliveredToServer), At: time.Now()}); err != errNotApplied {
		t.Fatalf("a change the settled message cannot take: %v, want errNotApplied", err)
	}
	// Another writer (the account's client) recorded DELIVERED_TO_SERVER
	// first: the gateway's own change of that state did nothing, and the
	// earlier change's cursor is not this one's.
	owner := store.Instance{Account: "a@example.org", Resource: "r"}
	if err := st.Commit(ctx, &store.Batch{Messages: []store.Message{{ID: "p1", Owner: owner, To: "b@example.org", Created: time.Now(), Raw: []byte("<message/>")}},
		Changes: []store.Change{{ID: "p1", State: tracking.DeliveredToServer, At: time.Now().Add(-time.Second)}}}); err != nil {
		t.Fatal(err)
	}
	if ev, err := r.change(ctx, "p1", Change{State: State(tracking.DeliveredToServer), At: time.Now()}); err != errNotApplied {
		t.Fatalf("a state another writer recorded first: %+v, %v; want errNotApplied", ev, err)
	}
}

// writeCounter counts the writes a store is asked for, by kind.
type writeCounter struct {
	store.Store
	mu                   sync.Mutex
	batches, msgs, other int // Commit calls, messages in them, other items in them
	keys, jobs           int // ClaimKey, PutJob calls
}

func (s *writeCounter) Commit(ctx context.Context, b *store.Batch) error {
	s.mu.Lock()
	s.batches++
	s.msgs += len(b.Messages)
	s.other += len(b.Changes) + len(b.Written) + len(b.Sessions)
	s.mu.Unlock()
	return s.Store.Commit(ctx, b)
}

func (s *writeCounter) ClaimKey(ctx context.Context, k store.Key) (string, bool, error) {
	s.mu.Lock()
	s.keys++
	s.mu.Unlock()
	return s.Store.ClaimKey(ctx, k)
}

func (s *writeCounter) PutJob(ctx context.Context, j store.Job) error {
	s.mu.Lock()
	s.jobs++
	s.mu.Unlock()
	return s.Store.PutJob(ctx, j)
}

// TestPlainPostWritesNothingOfItsOwn: with a store, a POST without an
// Idempotency-Key or send_at costs the store one transaction, the client's
// write-ahead of the message (through ClientStore); the gateway adds
// nothing of its own (no key, no job, no record), so that it costs a
// durable store no more than the library sending directly. An
// Idempotency-Key adds one write, its claim.
func TestPlainPostWritesNothingOfItsOwn(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	wc := &writeCounter{Store: st}
	f := newFixture(t, Config{Store: wc})
	for range 3 {
		f.send(`{"to":"bob@example.org","body":"plain"}`)
	}
	wc.mu.Lock()
	got := [5]int{wc.batches, wc.msgs, wc.other, wc.keys, wc.jobs}
	wc.mu.Unlock()
	if want := [5]int{3, 3, 0, 0, 0}; got != want {
		t.Fatalf("3 plain POSTs: commits, messages, other items, keys, jobs = %v, want %v", got, want)
	}
	f.send(`{"to":"bob@example.org","body":"keyed"}`, "Idempotency-Key", "k1")
	wc.mu.Lock()
	got = [5]int{wc.batches, wc.msgs, wc.other, wc.keys, wc.jobs}
	wc.mu.Unlock()
	if want := [5]int{4, 4, 0, 1, 0}; got != want {
		t.Fatalf("and one with a key: %v, want %v", got, want)
	}
}

// failOwnCommits is a store that refuses the gateway's own records (those
// of messages no client tracks) while down is set; the clients' records
// pass.
type failOwnCommits struct {
	store.Store
	down atomic.Bool
}

func (s *failOwnCommits) Commit(ctx context.Context, b *store.Batch) error {
	if s.down.Load() && len(b.Messages) > 0 && b.Messages[0].Owner.Resource == ownerResource {
		return errors.New("connection refused")
	}
	return s.Store.Commit(ctx, b)
}

// TestSendUncertain: a client that cannot tell whether the store recorded
// its message (xmpptrack.ErrRecordUncertain) sends it once it finds the
// record. The gateway records it ABORTED, which decides it, when it can:
// then the answer is what the record holds. When it cannot either, the
// outcome is unknown, and the answer says so (503 send-uncertain with the
// id), not send-failed: a caller that believed a failure and sent again
// would deliver the message twice.
func TestSendUncertain(t *testing.T) {
	uncertain := func(id string) error { return &xmpptrack.UncertainError{ID: id, Err: store.ErrOutcomeUnknown} }
	for _, tc := range []struct {
		name            string
		landed, ownDown bool
		code            int
		problem, state  string
	}{
		// The client's record landed, the gateway cannot write its own:
		// the message is pending, and its client will send it.
		{"unknown", true, true, 503, "send-uncertain", ""},
		// The client's record landed: the gateway's is refused (the id is
		// taken), and the message is accepted, pending.
		{"recorded", true, false, 202, "", "IN_TRANSIT"},
		// Nothing landed: the gateway's ABORTED decides it.
		{"aborted", false, false, 502, "send-failed", "ABORTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			fs := &failOwnCommits{Store: st}
			fs.down.Store(tc.ownDown)
			f := newFixture(t, Config{Store: fs})
			if tc.landed {
				f.fake.afterCommit = uncertain
			} else {
				f.fake.err = uncertain("ignored")
			}
			req := `{"to":"bob@example.org","body":"hi"}`
			code, h, b := f.do("POST", "/v1/messages", req, "Idempotency-Key", "k")
			if code != tc.code {
				t.Fatalf("answered %d %s, want %d", code, b, tc.code)
			}
			// The first and only request with its key is no replay,
			// whichever record decided it.
			if v := h.Get("Idempotent-Replayed"); v != "" {
				t.Errorf("answered %d %s with Idempotent-Replayed: %q", code, b, v)
			}
			var id string
			if tc.problem != "" {
				p := problemOf(t, h, b)
				if p.Type != ProblemTypePrefix+tc.problem || p.ID == "" || p.State != tc.state {
					t.Fatalf("problem %s", b)
				}
				id = p.ID
			} else {
				var r sendResponse
				mustJSON(t, b, &r)
				if r.ID == "" || r.State.String() != tc.state || r.Settled {
					t.Fatalf("answer %s", b)
				}
				id = r.ID
			}
			rec, err := st.Message(context.Background(), id)
			if err != nil {
				t.Fatalf("the message's record: %v", err)
			}
			if want := tc.state == "ABORTED"; rec.Settled != want {
				t.Fatalf("the record is %v, settled %v: the answer %s", rec.State, rec.Settled, b)
			}
			// A retry under the key answers with the record and sends
			// nothing.
			f.fake.afterCommit, f.fake.err = nil, nil
			code, h, b = f.do("POST", "/v1/messages", req, "Idempotency-Key", "k")
			var r sendResponse
			mustJSON(t, b, &r)
			if h.Get("Idempotent-Replayed") != "true" || r.ID != id || r.State != State(rec.State) || f.fake.count() != 0 {
				t.Fatalf("the retry: %d %s, %d sent", code, b, f.fake.count())
			}
		})
	}
}

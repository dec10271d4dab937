package gateway

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStoreTakesChangesOfReloadedMessages: with a store, a gateway records
// the changes a client reports for a message it did not send in this
// process (a client that re-loaded its trackers after a restart), and
// ignores those of messages the store does not hold.
func TestStoreTakesChangesOfReloadedMessages(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	f := newFixture(t, Config{Store: st})
	r := f.send(`{"to":"bob@example.org","body":"before the restart"}`)
	f.g.Close()

	g2, err := New(Config{Store: st, Tokens: []string{testToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	g2.OnStateChange(tracking.NewMessageTracker("not-in-the-store"), tracking.InTransit, tracking.DeliveredToServer, nil)
	g2.OnStateChange(tracking.NewMessageTracker(r.ID), tracking.InTransit, tracking.DeliveredToServer, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		h, _ := g2.rec.head(ctx)
		s, err := g2.statusOf(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if s.State.String() == "DELIVERED_TO_SERVER" {
			break
		}
		if err := g2.rec.wait(ctx, h); err != nil {
			t.Fatalf("the change was not recorded: %s", s.State)
		}
	}
	if _, err := g2.statusOf(ctx, "not-in-the-store"); err == nil {
		t.Fatal("a change created a message")
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

package xmpptrack

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/postgres"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationPostgresDown stops PostgreSQL in the middle of a run:
// while it is down, Send returns an error and writes nothing to the wire,
// and a message sent before goes on being tracked in memory (bob reads
// it: SEEN_BY_RECIPIENT); once the database is back, that change is
// written, Send works again, and nothing Send acknowledged is lost.
func TestIntegrationPostgresDown(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		pg := testserver.StartPostgres(t, testserver.PostgresOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dsn, err := pg.CreateDatabase(ctx, "down")
		if err != nil {
			t.Fatal(err)
		}
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()

		var mu sync.Mutex
		got := map[string]int{}
		var from jid.JID
		arrived := make(chan string, 16)
		bob := dialTest(t, srv, "bob", Config{AllowPlaintext: true, OnMessage: func(_ *Client, m *Incoming) {
			mu.Lock()
			got[m.ID]++
			from = m.From
			mu.Unlock()
			arrived <- m.ID
		}})
		alice := dialTest(t, srv, "alice", Config{AllowPlaintext: true, Store: st, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
		to := srv.JID("bob")

		before, err := alice.Send(ctx, Message{To: to, Body: "before"})
		if err != nil {
			t.Fatal(err)
		}
		if s, err := before.Wait(ctx, tracking.DeliveredToRecipient); err != nil || s != tracking.DeliveredToRecipient {
			t.Fatalf("before: %v, %v", s, err)
		}
		if <-arrived != before.ID() {
			t.Fatal("bob got another message first")
		}
		if _, err := alice.Status(ctx, before.ID()); err != nil { // its changes so far are written
			t.Fatal(err)
		}

		if err := pg.Halt(); err != nil {
			t.Fatal(err)
		}
		// Tracking goes on in memory: bob reads the message.
		mu.Lock()
		peer := from
		mu.Unlock()
		if !bob.MarkDisplayed(peer) {
			t.Fatal("bob could not mark the message displayed")
		}
		if s, err := before.Wait(ctx, tracking.SeenByRecipient); err != nil || s != tracking.SeenByRecipient {
			t.Fatalf("before, with the database down: %v, %v", s, err)
		}
		// Send fails and writes nothing.
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		downID := NewID()
		down, err := alice.Send(sctx, Message{ID: downID, To: to, Body: "down"})
		scancel()
		if err == nil {
			t.Fatal("Send succeeded with the database down")
		}
		if down != nil || !errors.Is(err, ErrNotRecorded) {
			t.Fatalf("Send with the database down: %v, %v; want a nil tracker and ErrNotRecorded", down, err)
		}
		t.Logf("Send with the database down: %v", err)
		refused := []string{downID}

		if err := pg.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		// The pool reconnects on demand: the first Sends may still fail,
		// and those write nothing either.
		var after *tracking.MessageTracker
		for deadline := time.Now().Add(30 * time.Second); ; {
			id := NewID()
			after, err = alice.Send(ctx, Message{ID: id, To: to, Body: "after"})
			if err == nil {
				break
			}
			refused = append(refused, id)
			if time.Now().After(deadline) {
				t.Fatalf("Send after the database came back: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if s, err := after.Wait(ctx, tracking.DeliveredToRecipient); err != nil || s != tracking.DeliveredToRecipient {
			t.Fatalf("after: %v, %v", s, err)
		}
		// One stream, in order: a refused message written before "after"
		// would have arrived before it.
		if id := <-arrived; id != after.ID() {
			t.Fatalf("bob got %q before %q", id, after.ID())
		}
		mu.Lock()
		for _, id := range refused {
			if got[id] > 0 {
				t.Errorf("refused message %s reached bob", id)
			}
		}
		mu.Unlock()

		// The change made while the database was down is written.
		status, err := alice.Status(ctx, before.ID())
		if err != nil {
			t.Fatal(err)
		}
		// The server's ack may come after bob's receipt: DELIVERED_TO_SERVER
		// is then skipped.
		h := historyStates(status.History)
		h = slices.DeleteFunc(h, func(s tracking.MessageState) bool { return s == tracking.DeliveredToServer })
		want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToRecipient, tracking.SeenByRecipient}
		if !slices.Equal(h, want) {
			t.Errorf("history of before %v, want %v (DELIVERED_TO_SERVER optional)", historyStates(status.History), want)
		}
		// Read back through another handle, as another instance would.
		other, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		for id, state := range map[string]tracking.MessageState{before.ID(): tracking.SeenByRecipient} {
			rec, err := other.Message(ctx, id)
			if err != nil || rec.State != state {
				t.Errorf("%s in the database: %v, %v; want %v", id, rec.State, err, state)
			}
		}
		if _, err := other.Message(ctx, after.ID()); err != nil {
			t.Errorf("after in the database: %v", err)
		}
		for _, id := range refused {
			if _, err := other.Message(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("refused message %s in the database: %v", id, err)
			}
		}
	})
}

// TestIntegrationPostgresLeaseCut cuts the connection that holds alice's
// lease while her client runs, and a second process's store asks for the
// lease at once: one of them owns alice, never both. Either the second
// takes it, and the first client stops (ErrLeaseLost, Send refused) while
// the second resumes the stream and sends; or the first takes it again,
// the second is refused, and the first goes on sending (review hunt-dur 1).
func TestIntegrationPostgresLeaseCut(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		pg := testserver.StartPostgres(t, testserver.PostgresOptions{NoFsync: true})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dsn, err := pg.CreateDatabase(ctx, "leasecut")
		if err != nil {
			t.Fatal(err)
		}
		st1, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st1.Close()
		st2, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		to := srv.JID("bob")
		dialTest(t, srv, "bob", Config{AllowPlaintext: true})
		first := dialTest(t, srv, "alice", Config{AllowPlaintext: true, Store: st1})
		if tr, err := first.Send(ctx, Message{To: to, Body: "before"}); err != nil {
			t.Fatal(err)
		} else if s, err := tr.Wait(ctx, tracking.DeliveredToRecipient); s != tracking.DeliveredToRecipient {
			t.Fatalf("before the cut: %v, %v", s, err)
		}

		if _, err := pg.SQL(ctx, "leasecut", `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted`); err != nil {
			t.Fatal(err)
		}
		var second *Client
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			second, err = Dial(ctx, srv.JID("alice"), srv.Password("alice"), &Config{Addr: srv.Addr(), AllowPlaintext: true, Store: st2})
			if !errors.Is(err, store.ErrLocked) {
				break
			}
		}
		owner := first
		if errors.Is(err, store.ErrLocked) {
			t.Log("the first client took its lease again; the second was refused")
		} else if err != nil {
			t.Fatal(err)
		} else {
			t.Log("the second client took the lease")
			defer second.Close()
			select {
			case <-first.Done():
			case <-ctx.Done():
				t.Fatal("the first client did not stop when the second took its lease")
			}
			if err := first.Err(); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("the first client's Err: %v, want ErrLeaseLost", err)
			}
			if _, err := first.Send(ctx, Message{To: to, Body: "from the old owner"}); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("the first client's Send: %v, want ErrLeaseLost", err)
			}
			owner = second
		}
		tr, err := owner.Send(ctx, Message{To: to, Body: "after"})
		if err != nil {
			t.Fatal(err)
		}
		if s, err := tr.Wait(ctx, tracking.DeliveredToRecipient); s != tracking.DeliveredToRecipient {
			t.Fatalf("the owner's message after the cut: %v, %v", s, err)
		}
	})
}

package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// freezer is a proxy tap that freezes the proxy once the client sends a
// given string (the id of a message, in the arguments of the call).
type freezer struct {
	mu     sync.Mutex
	p      *faultproxy.Proxy
	marker []byte
	frozen chan struct{}
}

func (f *freezer) arm(marker string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marker, f.frozen = []byte(marker), make(chan struct{})
	return f.frozen
}

func (f *freezer) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.marker != nil && bytes.Contains(b, f.marker) {
		f.marker = nil
		f.p.Freeze()
		close(f.frozen)
	}
	return len(b), nil
}

var doubtRuns atomic.Int64

// TestCommitInDoubt: the connection breaks after the commit call went to
// the server and before its answer came back. If the server committed it,
// the store finds the group's messages and Commit fails with
// store.ErrCursorsUnknown (stored, do not commit again), for every batch
// of the group; if its session ended without committing, the store finds
// that out and commits the batch again, unless its connections go through
// a pooler: then the session it knows is not the server's, and Commit
// fails with store.ErrOutcomeUnknown.
func TestCommitInDoubt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := server(t)
	const name = "in_doubt"
	dsn := database(t, name)
	f := &freezer{}
	p, err := faultproxy.Listen(faultproxy.Config{Target: srv.Addr(), TapUpFirst: true, Tap: func(int) (io.Writer, io.Writer) { return f, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f.p = p
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	s, err := OpenConfig(ctx, u.String(), Config{MaxConns: 1, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.pooled.Load() {
		t.Fatal("a direct connection taken for a pooler's")
	}
	// A session of its own, straight to the server.
	direct, err := pgx.Connect(ctx, dsn+"&application_name=doubt_test")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(context.Background())
	if _, err := direct.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	run := doubtRuns.Add(1)
	id := func(n int) string { return fmt.Sprintf("doubt%d-%d", run, n) }
	// The first commit prepares the call on the connection: the next ones
	// send only its arguments, with the message's id.
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg(id(1))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.WaitForNotification(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("committed", func(t *testing.T) {
		frozen := f.arm(id(2))
		done := make(chan error, 1)
		go func() { done <- s.Commit(ctx, &store.Batch{Messages: []store.Message{msg(id(2))}}) }()
		<-frozen
		// The server committed it (its notification came), and its
		// answer is lost.
		if _, err := direct.WaitForNotification(ctx); err != nil {
			t.Fatal(err)
		}
		p.Cut()
		err := <-done
		if !errors.Is(err, store.ErrCursorsUnknown) || errors.Is(err, store.ErrOutcomeUnknown) {
			t.Fatalf("Commit whose answer was lost: %v; want store.ErrCursorsUnknown only", err)
		}
		if _, err := s.Message(ctx, id(2)); err != nil {
			t.Fatalf("the message in doubt: %v", err)
		}
	})

	notCommitted := func(t *testing.T, s *Store, n int, want error) {
		t.Helper()
		// The call waits for the feed's lock, held here, and its session
		// is ended before it can commit.
		tx, err := direct.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(ctx, `SELECT last FROM xmpptrack_feed FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		frozen := f.arm(id(n))
		b := &store.Batch{Messages: []store.Message{msg(id(n))}}
		done := make(chan error, 1)
		go func() { done <- s.Commit(ctx, b) }()
		<-frozen
		if _, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'xmpptrack'`); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		p.Cut()
		err = <-done
		if want == nil {
			if err != nil {
				t.Fatalf("Commit whose session ended before committing: %v; want it committed again", err)
			}
			rec, err := s.Message(ctx, id(n))
			if err != nil || b.Messages[0].Cursor == 0 || rec.History[0].Cursor != b.Messages[0].Cursor {
				t.Fatalf("the message committed again: %+v, cursor %d, %v", rec, b.Messages[0].Cursor, err)
			}
			return
		}
		if !errors.Is(err, want) {
			t.Fatalf("Commit whose session ended before committing: %v; want %v", err, want)
		}
		if _, err := s.Message(ctx, id(n)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the message not committed: %v", err)
		}
	}

	t.Run("not committed", func(t *testing.T) { notCommitted(t, s, 3, nil) })

	t.Run("not committed, pooled", func(t *testing.T) {
		// The session ids of a pooler's connections are not the
		// server's: an idle or missing session proves nothing.
		sp, err := OpenConfig(ctx, u.String(), Config{MaxConns: 1, Retention: -1, pooled: true})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		if err := sp.Commit(ctx, &store.Batch{Messages: []store.Message{msg(id(4))}}); err != nil {
			t.Fatal(err)
		}
		if _, err := direct.WaitForNotification(ctx); err != nil {
			t.Fatal(err)
		}
		notCommitted(t, sp, 5, store.ErrOutcomeUnknown)
	})
}

// TestChangesRepeated: committing a batch of changes again (a caller
// that did not know that the first commit went through) records nothing:
// the feed does not move, and the changes get no cursor.
func TestChangesRepeated(t *testing.T) {
	ctx := context.Background()
	st, err := OpenConfig(ctx, database(t, "changes_repeated"), Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Commit(ctx, &store.Batch{Messages: []store.Message{msg("rep1"), msg("rep2")}}); err != nil {
		t.Fatal(err)
	}
	changes := func() *store.Batch {
		return &store.Batch{Changes: []store.Change{
			{ID: "rep1", State: tracking.DeliveredToServer}, {ID: "rep1", State: tracking.Error},
			{ID: "rep1", State: tracking.DeliveredToRecipient},
			{ID: "rep2", State: tracking.DeliveredToServer}, {ID: "rep2", State: tracking.TimedOut},
		}}
	}
	if err := st.Commit(ctx, changes()); err != nil {
		t.Fatal(err)
	}
	last, err := st.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := changes()
	if err := st.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, c := range b.Changes {
		if c.Cursor != 0 {
			t.Errorf("repeated change %v of %s recorded at %d", c.State, c.ID, c.Cursor)
		}
	}
	if again, err := st.LastCursor(ctx); err != nil || again != last {
		t.Fatalf("the feed moved from %d to %d (%v)", last, again, err)
	}
}

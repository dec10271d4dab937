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
// Commit fails with store.ErrOutcomeUnknown (not as a plain failure, which
// would say that nothing was stored); if its session ended without
// committing, the store finds that out and commits the batch again.
func TestCommitInDoubt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv := server(t)
	const name = "in_doubt"
	dsn := database(t, name)
	f := &freezer{}
	p, err := faultproxy.Listen(faultproxy.Config{Target: srv.Addr(), Tap: func(int) (io.Writer, io.Writer) { return f, nil }})
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
		if !errors.Is(err, store.ErrOutcomeUnknown) {
			t.Fatalf("Commit whose answer was lost: %v; want store.ErrOutcomeUnknown", err)
		}
		if _, err := s.Message(ctx, id(2)); err != nil {
			t.Fatalf("the message in doubt: %v", err)
		}
	})

	t.Run("not committed", func(t *testing.T) {
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
		frozen := f.arm(id(3))
		b := &store.Batch{Messages: []store.Message{msg(id(3))}}
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
		if err := <-done; err != nil {
			t.Fatalf("Commit whose session ended before committing: %v; want it committed again", err)
		}
		rec, err := s.Message(ctx, id(3))
		if err != nil || b.Messages[0].Cursor == 0 || rec.History[0].Cursor != b.Messages[0].Cursor {
			t.Fatalf("the message committed again: %+v, cursor %d, %v", rec, b.Messages[0].Cursor, err)
		}
	})
}

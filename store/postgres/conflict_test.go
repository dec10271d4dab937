package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xmpptrack/xmpptrack/store"
)

var conflicts atomic.Int64

// TestConflictWithOpenInsert: a new message whose id another transaction
// has inserted but not committed waits for it (the unique index), then
// fails alone with store.ErrExists (not the unique violation) if it
// committed, and is stored if it rolled back.
func TestConflictWithOpenInsert(t *testing.T) {
	for _, commit := range []bool{false, true} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dsn := database(t, fmt.Sprintf("conflict_%d_%d", time.Now().UnixNano(), conflicts.Add(1)))
			s, err := OpenConfig(ctx, dsn, Config{Retention: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			other, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(context.Background())
			tx, err := other.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(context.Background())
			if _, err := tx.Exec(ctx, `INSERT INTO xmpptrack_messages (id, account, resource, rcpt, room, thread, channel,
				created, state, settled, updated) VALUES ('x', 'o@example.org', 'r', 'b@example.org', false, '', '', now(), 0, false, now())`); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("x"), msg("y")}}) }()
			// The commit waits for the open transaction's insert.
			for waiting := false; !waiting; {
				err := other.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name = 'xmpptrack')`).Scan(&waiting)
				if err != nil {
					t.Fatal(err)
				}
			}
			if commit {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			err = <-done
			_, gerr := s.Message(ctx, "y")
			if commit {
				if !errors.Is(err, store.ErrExists) || !errors.Is(gerr, store.ErrNotFound) {
					t.Fatalf("id committed by another: %v; the batch's other message: %v", err, gerr)
				}
				return
			}
			if err != nil || gerr != nil {
				t.Fatalf("id rolled back by another: %v; the batch's other message: %v", err, gerr)
			}
			if rec, err := s.Message(ctx, "x"); err != nil || rec.Owner != msg("x").Owner {
				t.Fatalf("x: %+v, %v", rec, err)
			}
		})
	}
}

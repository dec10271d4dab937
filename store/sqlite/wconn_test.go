package sqlite

import (
	"context"
	"database/sql/driver"
	"path/filepath"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestWriterConnReplaced: when database/sql replaces the writer's
// connection (a driver.ErrBadConn), with the committer's statements closed
// first (as restart does) or left on the broken connection, the next
// commits prepare them again on the new connection and succeed, and the
// records written before and after are there.
func TestWriterConnReplaced(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit := func(id string) {
		t.Helper()
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, &store.Batch{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}}); err != nil {
			t.Fatal(err)
		}
	}
	// breakConn makes database/sql drop the writer's connection, and
	// returns it.
	breakConn := func(drop bool) any {
		t.Helper()
		conn, err := s.w.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var old any
		conn.Raw(func(dc any) error {
			old = dc
			if drop {
				s.dropStmts(dc)
			}
			return driver.ErrBadConn
		})
		return old
	}
	commit("m1")
	for i, drop := range []bool{true, false} {
		old := breakConn(drop)
		id := []string{"m2", "m3"}[i]
		commit(id)
		if s.wc == nil || s.wc.dc == old {
			t.Fatalf("drop %v: the statements were not prepared on a new connection", drop)
		}
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		rec, err := s.Message(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != tracking.DeliveredToServer || len(rec.History) != 2 {
			t.Errorf("%s: %v with %d changes, want DELIVERED_TO_SERVER with 2", id, rec.State, len(rec.History))
		}
	}
}

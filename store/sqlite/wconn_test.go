package sqlite

import (
	"context"
	"database/sql/driver"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// openFDs counts this process's descriptors of path and the files next to
// it (the lock file aside, which the ownership locks keep).
func openFDs(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(l, path) && !strings.HasSuffix(l, "-lock") {
			n++
		}
	}
	return n
}

// TestWriterConnReplaced: database/sql replaces the writer's connection
// when a statement on it returns driver.ErrBadConn (as restart does) and
// when a caller's context interrupted a statement on it (the driver then
// reports it invalid). The next commits prepare the committer's statements
// on the new connection and succeed, the records written before and after
// are there, and every replaced connection was really closed: after Close
// no file of the store is open.
func TestWriterConnReplaced(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(id string) {
		t.Helper()
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, &store.Batch{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}}); err != nil {
			t.Fatal(err)
		}
	}
	current := func() any {
		t.Helper()
		var dc any
		if err := s.onWriter(ctx, func(c *wconn) error { dc = c; return nil }); err != nil {
			t.Fatal(err)
		}
		return dc
	}
	commit("m1")
	ids := []string{"m1"}
	for i, replace := range []func(){
		func() { // a driver.ErrBadConn
			conn, err := s.w.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conn.Raw(func(any) error { return driver.ErrBadConn })
			conn.Close()
		},
		func() { // a statement its caller's context interrupted
			cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			defer cancel()
			if _, err := s.w.ExecContext(cctx, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c`); err == nil {
				t.Fatal("an endless query ended")
			}
		},
	} {
		old := current()
		// A deadline that passed before the statement began leaves the
		// connection alone: try again a few times.
		for try := 0; try < 10 && current() == old; try++ {
			replace()
		}
		if current() == old {
			t.Fatalf("replacement %d: the writer's connection was not replaced", i)
		}
		id := []string{"m2", "m3"}[i]
		commit(id)
		ids = append(ids, id)
	}
	for _, id := range ids {
		rec, err := s.Message(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != tracking.DeliveredToServer || len(rec.History) != 2 {
			t.Errorf("%s: %v with %d changes, want DELIVERED_TO_SERVER with 2", id, rec.State, len(rec.History))
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := openFDs(t, p); n != 0 {
		t.Errorf("after Close, %d descriptors of %s are still open", n, p)
	}
}

// TestRollbackFails: a transaction whose ROLLBACK fails (left open) has its
// connection dropped, so that the next transaction (here the same batch,
// written again with the cache emptied after a stale row) begins on a new
// one instead of failing at BEGIN.
func TestRollbackFails(t *testing.T) {
	ctx := context.Background()
	a, b := twoWriters(t, Config{failRollback: true})
	commitT(t, a, &store.Batch{Messages: []store.Message{message("m")}})
	commitT(t, a, change("m", tracking.DeliveredToServer))
	commitT(t, b, change("m", tracking.DeliveredToRecipient)) // a's cache is stale
	commitT(t, a, change("m", tracking.SeenByRecipient))
	r, err := a.Message(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != tracking.SeenByRecipient || !r.Settled {
		t.Errorf("state %v settled %v, want SEEN_BY_RECIPIENT settled", r.State, r.Settled)
	}
}

// TestStrayTransaction: code other than the committer left the writer's
// connection inside a transaction (here a BEGIN through database/sql): the
// committer's next BEGIN fails, the stray transaction is rolled back on the
// same connection, and that commit and the ones after it succeed.
func TestStrayTransaction(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	if _, err := s.w.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m1", "m2", "m3"} {
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
}

package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

var upgrades atomic.Int64

// TestUpgradeFromVersion1: a database of the first schema, with a settled
// message, a pending one and their history, is upgraded by Open: the
// records read as before, commits go through xmpptrack_commit, and Prune
// finds the settled message (its settled_at was filled in) and deletes its
// history with it.
func TestUpgradeFromVersion1(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	name := fmt.Sprintf("upgrade1_%d", upgrades.Add(1)) // a new database at each run (-count)
	dsn, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SQL(ctx, name, `CREATE TABLE xmpptrack_schema (app text NOT NULL, version integer NOT NULL);
		INSERT INTO xmpptrack_schema VALUES ('xmpptrack', 1);`+migrations[0]+`
		INSERT INTO xmpptrack_messages (id, account, resource, rcpt, room, thread, channel, raw, created, state, settled, updated)
		VALUES ('old', 'a@example.org', 'r', 'b@example.org', false, '', '', NULL, now() - interval '30 days', 3, true, now() - interval '20 days'),
			('live', 'a@example.org', 'r', 'b@example.org', false, '', '', '<message id="live"/>', now(), 0, false, now());
		INSERT INTO xmpptrack_changes (cursor, msg, state, settles, at) VALUES
			(1, 1, 0, false, now() - interval '30 days'), (2, 1, 3, true, now() - interval '20 days'), (3, 2, 0, false, now());
		UPDATE xmpptrack_feed SET last = 3;`); err != nil {
		t.Fatal(err)
	}
	s, err := OpenConfig(ctx, dsn, Config{Retention: -1}) // no pruning at Open
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.version(ctx, s.pool); err != nil || v != SchemaVersion {
		t.Fatalf("version %d, %v; want %d", v, err, SchemaVersion)
	}
	// The upgrade leaves one xmpptrack_commit: the one the store calls.
	if out, err := srv.SQL(ctx, name, `SELECT string_agg(pronargs::text, ',' ORDER BY pronargs) FROM pg_proc WHERE proname = 'xmpptrack_commit'`); err != nil || out != "36" {
		t.Errorf("xmpptrack_commit functions (numbers of arguments): %q, %v", out, err)
	}
	rec, err := s.Message(ctx, "old")
	if err != nil || !rec.Settled || len(rec.History) != 2 {
		t.Fatalf("old: %+v, %v", rec, err)
	}
	b := &store.Batch{Changes: []store.Change{{ID: "live", State: tracking.DeliveredToServer}}, Written: []store.Written{{ID: "live", Seq: 7}}}
	if err := s.Commit(ctx, b); err != nil || b.Changes[0].Cursor != 4 {
		t.Fatalf("commit after the upgrade: cursor %d, %v", b.Changes[0].Cursor, err)
	}
	if rec, err := s.Message(ctx, "live"); err != nil || rec.State != tracking.DeliveredToServer || rec.Seq != 7 || !rec.Written {
		t.Fatalf("live: %+v, %v", rec, err)
	}
	if n, err := s.Prune(ctx, time.Now().Add(-7*24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("Prune: %d, %v; want 1", n, err)
	}
	if out, err := srv.SQL(ctx, name, `SELECT count(*) FROM xmpptrack_changes WHERE msg = 1`); err != nil || out != "0" {
		t.Errorf("history of the pruned message: %q, %v", out, err)
	}
}

package pgfloor_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/pgfloor"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/postgres"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// open starts a server, opens the real store on a database of its own and
// installs floor k in it.
func open(t *testing.T, k pgfloor.Kind) (*testserver.Postgres, *postgres.Store) {
	t.Helper()
	if err := testserver.PostgresAvailable(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true: %v", err)
		}
		t.Skipf("PostgreSQL not available: %v", err)
	}
	ctx := context.Background()
	pg := testserver.StartPostgres(t, testserver.PostgresOptions{NoFsync: true})
	dsn, err := pg.CreateDatabase(ctx, "floor")
	if err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	install, err := pgfloor.Install(k)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := pg.SQL(ctx, "floor", install); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return pg, st
}

// query runs one query and returns its single value.
func query(t *testing.T, pg *testserver.Postgres, sql string) string {
	t.Helper()
	out, err := pg.SQL(context.Background(), "floor", sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

var owner = store.Instance{Account: "a@example.org", Resource: "r"}

// lifecycle commits what a client commits for two messages: the
// write-ahead, the sequence numbers with DELIVERED_TO_SERVER and a
// session, then the receipts.
func lifecycle(t *testing.T, st *postgres.Store) []*store.Batch {
	t.Helper()
	ctx := context.Background()
	at := time.Now()
	bs := []*store.Batch{
		{Messages: []store.Message{
			{ID: "m1", Owner: owner, To: "b@example.org", Raw: []byte("<message id='m1'/>"), State: tracking.InTransit},
			{ID: "m2", Owner: owner, To: "b@example.org", Raw: []byte("<message id='m2'/>"), State: tracking.InTransit},
		}},
		{
			Written:  []store.Written{{ID: "m1", Seq: 1}, {ID: "m2", Seq: 2}},
			Changes:  []store.Change{{ID: "m1", State: tracking.DeliveredToServer, At: at}, {ID: "m2", State: tracking.DeliveredToServer, At: at}},
			Sessions: []store.Session{{Owner: owner, JID: "a@example.org/r", ID: "smid", Outbound: 2, Acked: 2}},
		},
		{Changes: []store.Change{{ID: "m1", State: tracking.DeliveredToRecipient, At: at, Evidence: store.Evidence{From: "b@example.org/x"}}}},
	}
	for _, b := range bs {
		if err := st.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return bs
}

// TestRows: the real store's Commit through Rows writes the write-ahead
// rows, appends every change and sequence number, saves the session (read
// back through the real store), and hands out cursors; the real tables get
// no message.
func TestRows(t *testing.T) {
	pg, st := open(t, pgfloor.Rows)
	bs := lifecycle(t, st)
	if got := query(t, pg, "SELECT string_agg(id || '=' || convert_from(raw, 'UTF8'), ' ' ORDER BY id) FROM "+pgfloor.WALTable); got != "m1=<message id='m1'/> m2=<message id='m2'/>" {
		t.Errorf("write-ahead rows: %q", got)
	}
	got := query(t, pg, "SELECT string_agg(id || ':' || coalesce(state::text, '-') || ':' || coalesce(seq::text, '-'), ' ' ORDER BY id, state, seq) FROM "+pgfloor.LogTable)
	if want := "m1:1:- m1:2:- m1:-:1 m2:1:- m2:-:2"; got != want {
		t.Errorf("log rows: %q, want %q", got, want)
	}
	if got := query(t, pg, "SELECT count(*) FROM xmpptrack_messages"); got != "0" {
		t.Errorf("%s messages in the real table", got)
	}
	sess, err := st.Session(context.Background(), owner)
	if err != nil || sess.ID != "smid" || sess.Outbound != 2 {
		t.Errorf("Session: %+v, %v", sess, err)
	}
	checkCursors(t, bs)
}

// TestTrip: Trip writes no row, but each group commit writes to the log
// before its commit (else PostgreSQL would not wait for the commit's
// flush) and takes a transaction id.
func TestTrip(t *testing.T) {
	pg, st := open(t, pgfloor.Trip)
	bs := lifecycle(t, st)
	for _, table := range []string{pgfloor.WALTable, pgfloor.LogTable, "xmpptrack_messages", "xmpptrack_sessions"} {
		if got := query(t, pg, "SELECT count(*) FROM "+table); got != "0" {
			t.Errorf("%s rows in %s", got, table)
		}
	}
	checkCursors(t, bs)
	nulls := strings.TrimSuffix(strings.Repeat("NULL, ", 36), ", ")
	query(t, pg, `DO $$ DECLARE a pg_lsn := pg_current_wal_insert_lsn(); BEGIN
		PERFORM xmpptrack_commit(`+nulls+`);
		IF pg_current_wal_insert_lsn() = a OR pg_current_xact_id_if_assigned() IS NULL THEN
			RAISE EXCEPTION 'nothing to flush at commit';
		END IF;
	END $$`)
}

// checkCursors: every message and change got a cursor, as if applied.
func checkCursors(t *testing.T, bs []*store.Batch) {
	t.Helper()
	for _, b := range bs {
		for _, m := range b.Messages {
			if m.Cursor <= 0 {
				t.Errorf("message %s: cursor %d", m.ID, m.Cursor)
			}
		}
		for _, c := range b.Changes {
			if c.Cursor <= 0 {
				t.Errorf("change %s %s: cursor %d", c.ID, c.State, c.Cursor)
			}
		}
	}
}

func TestUnknown(t *testing.T) {
	if _, err := pgfloor.Install("none"); err == nil {
		t.Error("Install of an unknown floor: no error")
	}
}

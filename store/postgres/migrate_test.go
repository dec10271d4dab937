package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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
	if _, err := srv.SQL(ctx, name, stampSQL(1)+migrations[0]+`
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
	if !genericPlans(t, srv, name) {
		t.Error("xmpptrack_commit does not plan generically")
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

// genericPlans reports whether xmpptrack_commit runs with
// plan_cache_mode = force_generic_plan (schema 6).
func genericPlans(t *testing.T, srv interface {
	SQL(context.Context, string, string) (string, error)
}, db string) bool {
	t.Helper()
	out, err := srv.SQL(context.Background(), db, `SELECT coalesce(bool_or(c = 'plan_cache_mode=force_generic_plan'), false)
		FROM pg_proc, unnest(proconfig) AS c WHERE proname = 'xmpptrack_commit'`)
	if err != nil {
		t.Fatal(err)
	}
	return out == "t"
}

// TestUpgradeFromVersion2: a database of schema 2 (the last released
// before 6), with a pending message, is upgraded to the current schema by
// Open: its function plans generically, and the message settles through
// it.
func TestUpgradeFromVersion2(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	name := fmt.Sprintf("upgrade2_%d", upgrades.Add(1))
	dsn, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SQL(ctx, name, stampSQL(2)+migrations[0]+migrations[1]); err != nil {
		t.Fatal(err)
	}
	if genericPlans(t, srv, name) {
		t.Fatal("schema 2 plans generically already")
	}
	s, err := OpenConfig(ctx, dsn, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.version(ctx, s.pool); err != nil || v != SchemaVersion || SchemaVersion != 7 {
		t.Fatalf("version %d, %v; want 7 (SchemaVersion %d)", v, err, SchemaVersion)
	}
	if !genericPlans(t, srv, name) {
		t.Error("xmpptrack_commit does not plan generically")
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("m")}}); err != nil {
		t.Fatal(err)
	}
	b := &store.Batch{Changes: []store.Change{{ID: "m", State: tracking.SeenByRecipient}}}
	if err := s.Commit(ctx, b); err != nil || b.Changes[0].Cursor != 2 {
		t.Fatalf("commit after the upgrade: cursor %d, %v", b.Changes[0].Cursor, err)
	}
	if rec, err := s.Message(ctx, "m"); err != nil || !rec.Settled || len(rec.History) != 2 {
		t.Fatalf("m: %+v, %v", rec, err)
	}
}

// TestUpgradeFromVersion6: a database of schema 6 with a pending message
// is upgraded to 7 by Open: one xmpptrack_commit, of the same arguments,
// with schema 7's body and still planning generically without sequential
// scans, through which the message settles and the feed goes on from its
// last cursor.
func TestUpgradeFromVersion6(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	name := fmt.Sprintf("upgrade6_%d", upgrades.Add(1))
	dsn, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SQL(ctx, name, stampSQL(6)+migrations[0]+migrations[1]+migrations[5]+`
		INSERT INTO xmpptrack_messages (id, account, resource, rcpt, room, thread, channel, raw, created, state, settled, updated)
		VALUES ('live', 'a@example.org', 'r', 'b@example.org', false, '', '', '<message id="live"/>', now(), 0, false, now());
		INSERT INTO xmpptrack_changes (cursor, msg, state, settles, at) VALUES (5, 1, 0, false, now());
		UPDATE xmpptrack_feed SET last = 5;`); err != nil {
		t.Fatal(err)
	}
	body := func() string {
		out, err := srv.SQL(ctx, name, `SELECT count(*), bool_and(prosrc = `+dollarQuoted(commitBody(migrations[6]))+`),
			bool_and(pronargs = 36), bool_and('enable_seqscan=off' = ANY (proconfig))
			FROM pg_proc WHERE proname = 'xmpptrack_commit'`)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if b := body(); b != "1|f|t|t" {
		t.Fatalf("schema 6's function: %q", b)
	}
	s, err := OpenConfig(ctx, dsn, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.version(ctx, s.pool); err != nil || v != 7 {
		t.Fatalf("version %d, %v; want 7", v, err)
	}
	if b := body(); b != "1|t|t|t" {
		t.Errorf("after the upgrade (functions, schema 7's body, 36 arguments, no sequential scans): %q", b)
	}
	if !genericPlans(t, srv, name) {
		t.Error("xmpptrack_commit does not plan generically")
	}
	b := &store.Batch{Messages: []store.Message{msg("new")}, Changes: []store.Change{
		{ID: "live", State: tracking.DeliveredToServer}, {ID: "live", State: tracking.SeenByRecipient}}}
	if err := s.Commit(ctx, b); err != nil || b.Messages[0].Cursor != 6 || b.Changes[0].Cursor != 7 || b.Changes[1].Cursor != 8 {
		t.Fatalf("commit after the upgrade: %+v, %v", b, err)
	}
	if rec, err := s.Message(ctx, "live"); err != nil || !rec.Settled || len(rec.History) != 3 {
		t.Fatalf("live: %+v, %v", rec, err)
	}
}

// TestWithdrawnVersions: a database stamped 3, 4 or 5 (schema versions
// that development builds wrote and withdrew) is refused with
// store.ErrNewerSchema, untouched.
func TestWithdrawnVersions(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	for v := 3; v <= 5; v++ {
		name := fmt.Sprintf("withdrawn%d_%d", v, upgrades.Add(1))
		dsn, err := srv.CreateDatabase(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.SQL(ctx, name, stampSQL(v)+migrations[0]+migrations[1]); err != nil {
			t.Fatal(err)
		}
		if s, err := Open(ctx, dsn); !errors.Is(err, store.ErrNewerSchema) {
			if err == nil {
				s.Close()
			}
			t.Errorf("version %d: %v, want ErrNewerSchema", v, err)
		}
		if out, err := srv.SQL(ctx, name, `SELECT version FROM xmpptrack_schema`); err != nil || out != fmt.Sprint(v) {
			t.Errorf("version %d: now %q, %v", v, out, err)
		}
		if genericPlans(t, srv, name) {
			t.Errorf("version %d: upgraded", v)
		}
	}
}

// stampSQL creates xmpptrack_schema with the given version, for a database
// a test builds from migrations itself.
func stampSQL(version int) string {
	return fmt.Sprintf(`CREATE TABLE xmpptrack_schema (app text NOT NULL, version integer NOT NULL);
		INSERT INTO xmpptrack_schema VALUES ('xmpptrack', %d);`, version)
}

// commitBody is the body of the xmpptrack_commit that a migration creates.
func commitBody(migration string) string {
	_, rest, _ := strings.Cut(migration, "$fn$")
	body, _, _ := strings.Cut(rest, "$fn$")
	return body
}

func dollarQuoted(s string) string { return "$q$" + s + "$q$" }

// TestUpgradeInTablesSchema: a database of schema 6 in the schema app,
// opened by a role whose search_path puts the schema other first, is
// upgraded in app: one xmpptrack_commit, app's, with schema 7's body.
func TestUpgradeInTablesSchema(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	name := fmt.Sprintf("upgradeschema_%d", upgrades.Add(1))
	dsn, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.SQL(ctx, name, `CREATE SCHEMA app; CREATE SCHEMA other; SET search_path = app;`+
		stampSQL(6)+migrations[0]+migrations[1]+migrations[5]); err != nil {
		t.Fatal(err)
	}
	s, err := OpenConfig(ctx, dsn+"&search_path=other,app", Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := srv.SQL(ctx, name, `SELECT string_agg(n.nspname || ' ' || (p.prosrc = `+dollarQuoted(commitBody(migrations[6]))+`), ',')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = 'xmpptrack_commit'`)
	if err != nil || out != "app true" {
		t.Errorf("xmpptrack_commit functions (schema, schema 7's body): %q, %v; want \"app true\"", out, err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("m")}}); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeWhileCommitting: a store whose sessions call schema 6's
// function (prepared and compiled) goes on committing, with no failure,
// while another session runs migration 6 → 7 under the migration lock;
// the feed has no hole (as many rows as the last cursor).
func TestUpgradeWhileCommitting(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	name := dbName(t, "upgradelive")
	// Schema 6's function in a database stamped current: Open leaves it.
	if _, err := srv.SQL(ctx, name, stampSQL(SchemaVersion)+migrations[0]+migrations[1]+migrations[5]); err != nil {
		t.Fatal(err)
	}
	s, err := OpenConfig(ctx, srv.DSN("", name), Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	progress := make(chan struct{}, 1<<16) // a lifecycle committed
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				for _, b := range []*store.Batch{{Messages: []store.Message{msg(id)}},
					{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}, Written: []store.Written{{ID: id, Seq: uint32(i)}}},
					{Changes: []store.Change{{ID: id, State: tracking.SeenByRecipient}}}} {
					if err := s.Commit(ctx, b); err != nil {
						errs <- fmt.Errorf("%s: %w", id, err)
						return
					}
				}
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		})
	}
	wait := func(n int) {
		for range n {
			select {
			case <-progress:
			case err := <-errs:
				close(stop)
				wg.Wait()
				t.Fatal(err)
			}
		}
	}
	wait(40)
	if _, err := srv.SQL(ctx, name, fmt.Sprintf(`BEGIN; SELECT pg_advisory_xact_lock(%d); %s; COMMIT;`,
		int64(migrationLock), migrations[6])); err != nil {
		t.Fatal(err)
	}
	if out, err := srv.SQL(ctx, name, `SELECT prosrc = `+dollarQuoted(commitBody(migrations[6]))+
		` FROM pg_proc WHERE proname = 'xmpptrack_commit'`); err != nil || out != "t" {
		t.Fatalf("after migration 6: schema 7's body %q, %v", out, err)
	}
	wait(len(progress) + 40) // 40 lifecycles committed after the upgrade
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	last, err := s.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := srv.SQL(ctx, name, `SELECT count(*) FROM xmpptrack_changes`); err != nil || out != fmt.Sprint(last) || last < 240 {
		t.Fatalf("feed rows %q, last cursor %d, %v", out, last, err)
	}
}

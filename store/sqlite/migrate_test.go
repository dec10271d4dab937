package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// testdata/schema1.db was written by the schema-1 code (before migration
// 1 → 2): messages pending (cursor 1, seq 1) and acked (cursors 2 and 4,
// seq 2), a session, and message gone (cursors 3 and 5), settled and
// pruned, so that its last cursor, 5, was kept only by sqlite_sequence.

// TestMigrateSchema1 opens a schema-1 file: it is upgraded, its records read
// as before, and new changes get cursors above every cursor it ever gave,
// the pruned ones included.
func TestMigrateSchema1(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema1.db", 1)
	if c, err := s.LastCursor(ctx); err != nil || c != 5 {
		t.Errorf("LastCursor %d, %v; want 5", c, err)
	}
	r, err := s.Message(ctx, "acked")
	if err != nil || r.State != tracking.DeliveredToServer || !r.Written || r.Seq != 2 || r.Cursor != 4 ||
		len(r.History) != 2 || r.History[0].Cursor != 2 || r.History[1].Cursor != 4 {
		t.Fatalf("acked: %+v, %v", r, err)
	}
	// Its creation, once a change row, is its row now: same state and time.
	if h := r.History[0]; h.State != tracking.InTransit || h.Settled || !h.At.Equal(r.Created) {
		t.Errorf("acked's creation: %+v, created %v", h, r.Created)
	}
	if h := r.History[1]; h.State != tracking.DeliveredToServer || h.Settled {
		t.Errorf("acked's ack: %+v", h)
	}
	var pending []store.Message
	owner := store.Instance{Account: "a@example.org", Resource: "r"}
	if err := s.Pending(ctx, owner, func(m store.Message) error { pending = append(pending, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].ID != "pending" || pending[0].Cursor != 1 || pending[1].Cursor != 4 {
		t.Errorf("pending: %+v", pending)
	}
	if ss, err := s.Session(ctx, owner); err != nil || ss.ID != "smid" || ss.Outbound != 2 {
		t.Errorf("session: %+v, %v", ss, err)
	}
	b := &store.Batch{Messages: []store.Message{message("new")}, Changes: []store.Change{{ID: "pending", State: tracking.DeliveredToServer}}}
	commitT(t, s, b)
	if b.Messages[0].Cursor != 6 || b.Changes[0].Cursor != 7 {
		t.Errorf("new cursors %d, %d; want 6, 7", b.Messages[0].Cursor, b.Changes[0].Cursor)
	}
	var got []int64
	for _, c := range feed(t, s, 0) {
		got = append(got, c.Cursor)
	}
	if want := []int64{1, 2, 4, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("feed cursors %v, want %v", got, want)
	}
	// Pruning the holder of the highest cursor keeps it, in place of the
	// tombstone the migration made for cursor 5.
	commitT(t, s, &store.Batch{Changes: []store.Change{{ID: "new", State: tracking.Closed, At: time.Now().Add(-time.Hour)}}})
	if n, err := s.Prune(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("Prune %d, %v; want 1", n, err)
	}
	if c, err := s.LastCursor(ctx); err != nil || c != 8 {
		t.Errorf("LastCursor after Prune %d, %v; want 8", c, err)
	}
	db := rawDB(t, p)
	var tombs []int64
	rows, err := db.Query(`SELECT cursor FROM changes WHERE message = 0`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c int64
		rows.Scan(&c)
		tombs = append(tombs, c)
	}
	rows.Close()
	if !slices.Equal(tombs, []int64{8}) {
		t.Errorf("tombstones %v, want [8]", tombs)
	}
	// The file keeps no AUTOINCREMENT: its sqlite_sequence row was the page
	// every transaction wrote besides its rows.
	var ddl string
	if err := db.QueryRow(`SELECT sql FROM sqlite_schema WHERE name = 'changes'`).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(ddl), "AUTOINCREMENT") {
		t.Errorf("changes: %s", ddl)
	}
}

// TestPruneKeepsLastCursor prunes the messages that hold the latest
// cursors (changes, or a message's creation): a change committed after
// gets a higher cursor (a follower that
// saw the pruned ones would otherwise skip it), the tombstone that keeps the
// cursor shows nowhere, and later prunes keep one tombstone at most.
func TestPruneKeepsLastCursor(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := time.Now().Add(-time.Hour)
	commitT(t, s, &store.Batch{Messages: []store.Message{message("live")}})
	for round, ids := range [][]string{{"a", "b"}, {"c"}, {"d"}} {
		for _, id := range ids {
			if id == "d" { // created settled: the highest cursor is its creation
				m := message(id)
				m.State, m.Created = tracking.Closed, old
				commitT(t, s, &store.Batch{Messages: []store.Message{m}})
				continue
			}
			commitT(t, s, &store.Batch{Messages: []store.Message{message(id)},
				Changes: []store.Change{{ID: id, State: tracking.Closed, At: old}}})
		}
		last, err := s.LastCursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Prune(ctx, time.Now()); err != nil || n != len(ids) {
			t.Fatalf("round %d: Prune %d, %v", round, n, err)
		}
		if c, err := s.LastCursor(ctx); err != nil || c != last {
			t.Errorf("round %d: LastCursor after Prune %d, %v; want %d", round, c, err, last)
		}
		if f := feed(t, s, 0); len(f) != 1+round || f[0].ID != "live" {
			t.Errorf("round %d: feed %+v", round, f)
		}
		// A new message's history is its own (the tombstone belongs to no
		// message).
		id := "after" + ids[0]
		b := &store.Batch{Messages: []store.Message{message(id)}}
		commitT(t, s, b)
		if b.Messages[0].Cursor != last+1 {
			t.Errorf("round %d: cursor %d after pruning, want %d", round, b.Messages[0].Cursor, last+1)
		}
		if h := historyOf(t, s, id); len(h) != 1 {
			t.Errorf("round %d: history of %s: %v", round, id, h)
		}
		var tombs int
		if err := rawDB(t, p).QueryRow(`SELECT count(*) FROM changes WHERE message = 0`).Scan(&tombs); err != nil || tombs != 1 {
			t.Errorf("round %d: %d tombstones, %v", round, tombs, err)
		}
	}
}

// TestMigrateMessageWithoutChanges: a schema-1 message whose change rows
// are gone (a damaged file) is numbered above every cursor, so that no two
// events of the feed share one.
func TestMigrateMessageWithoutChanges(t *testing.T) {
	ctx := context.Background()
	p := copyTestdata(t, "schema1.db")
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`DELETE FROM changes WHERE msg = (SELECT n FROM messages WHERE id = 'acked')`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenConfig(ctx, p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Message(ctx, "acked")
	if err != nil || r.Cursor != 6 || r.State != tracking.DeliveredToServer || len(r.History) != 1 {
		t.Fatalf("acked: %+v, %v; want cursor 6 (above the tombstone 5)", r, err)
	}
	seen := map[int64]bool{}
	for _, c := range feed(t, s, 0) {
		if seen[c.Cursor] {
			t.Errorf("cursor %d twice in the feed", c.Cursor)
		}
		seen[c.Cursor] = true
	}
	if c, err := s.LastCursor(ctx); err != nil || c != 6 {
		t.Errorf("LastCursor %d, %v; want 6", c, err)
	}
}

func feed(t *testing.T, s *Store, after int64) []store.Change {
	t.Helper()
	cs, err := s.Changes(context.Background(), store.FeedQuery{After: after})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// copyTestdata copies the database file testdata/name to a temporary
// directory and returns the copy's path: opening a file upgrades it.
func copyTestdata(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// openUpgraded opens a copy of the database file testdata/name, which
// has schema version from, with Retention -1 (nothing pruned at Open),
// and checks that Open upgraded it to the golden schema (see
// TestSchemaGolden). The store is closed at the test's end.
func openUpgraded(t *testing.T, name string, from int) (*Store, string) {
	t.Helper()
	p := copyTestdata(t, name)
	if v := userVersion(t, p); v != from {
		t.Fatalf("testdata/%s has user_version %d, want %d", name, v, from)
	}
	s, err := OpenConfig(context.Background(), p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if v := userVersion(t, p); v != SchemaVersion {
		t.Errorf("user_version %d after Open, want %d", v, SchemaVersion)
	}
	checkGolden(t, p)
	return s, p
}

// olderWriter opens the database file p as another version of this
// package would, on its own connections (of this process, so that the
// store's hold on the file lets them in).
func olderWriter(t *testing.T, p string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", p+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func rawDB(t *testing.T, p string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", p+"?_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func userVersion(t *testing.T, p string) int {
	t.Helper()
	var v int
	if err := rawDB(t, p).QueryRow(`PRAGMA user_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOlderWriterRefused: the statements of an older version of this
// package (which number a change after the highest change only, at or
// below the creation of a message a follower may have seen, and prune
// without a tombstone for a creation) fail on an upgraded file, also when
// they were prepared before the upgrade, and write nothing.
func TestOlderWriterRefused(t *testing.T) {
	ctx := context.Background()
	p := copyTestdata(t, "schema2.db")
	old, err := sql.Open("sqlite", p+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	conn, err := old.Conn(ctx) // the old process's connection, open across the upgrade
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	oldStmts := []string{
		`INSERT INTO changes (msg, state, settles, at) VALUES (1, 2, 0, 1)`,
		`DELETE FROM changes WHERE msg IN (SELECT n FROM messages WHERE settled = 1)`,
		`SELECT cursor FROM changes WHERE msg = 1`,
	}
	var prepared []*sql.Stmt
	for _, q := range oldStmts {
		st, err := conn.PrepareContext(ctx, q)
		if err != nil {
			t.Fatalf("schema 2: %s: %v", q, err)
		}
		defer st.Close()
		prepared = append(prepared, st)
	}
	s, err := OpenConfig(ctx, p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, err := s.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range prepared {
		if _, err := st.ExecContext(ctx); err == nil || !strings.Contains(err.Error(), "msg") {
			t.Errorf("prepared before the upgrade: %s: %v, want refused", oldStmts[i], err)
		}
		if _, err := conn.ExecContext(ctx, oldStmts[i]); err == nil || !strings.Contains(err.Error(), "msg") {
			t.Errorf("after the upgrade: %s: %v, want refused", oldStmts[i], err)
		}
	}
	if c, err := s.LastCursor(ctx); err != nil || c != before {
		t.Errorf("LastCursor %d, %v; want %d (nothing written)", c, err, before)
	}
	// This version's commits and pruning pass.
	commitT(t, s, &store.Batch{Messages: []store.Message{message("x")}})
	commitT(t, s, change("x", tracking.DeliveredToServer))
	if c, err := s.LastCursor(ctx); err != nil || c != before+2 {
		t.Errorf("LastCursor %d, %v; want %d", c, err, before+2)
	}
	if _, err := s.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Errorf("Prune: %v", err)
	}
}

// TestMigrateSchema2 opens testdata/schema2.db, written by the schema-2
// code (messages seen with evidence, errored, aborted, created settled,
// channels, and the latest one pruned, its cursor kept by a tombstone):
// its messages, their histories, the feed and LastCursor read as the
// schema-2 code read them (testdata/schema2.json).
func TestMigrateSchema2(t *testing.T) {
	ctx := context.Background()
	want, err := os.ReadFile("testdata/schema2.json")
	if err != nil {
		t.Fatal(err)
	}
	p := copyTestdata(t, "schema2.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]any{}
	for _, id := range []string{"seen", "errored", "aborted", "cancelled"} {
		r, err := s.Message(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got[id] = r
	}
	got["feed"] = feed(t, s, 0)
	if got["last"], err = s.LastCursor(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := json.MarshalIndent(got, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if string(j) != string(want) {
		t.Errorf("after the upgrade:\n%s\nwant (schema 2):\n%s", j, want)
	}
	b := &store.Batch{Messages: []store.Message{message("new")}}
	commitT(t, s, b)
	if b.Messages[0].Cursor != 11 {
		t.Errorf("new message's cursor %d, want 11", b.Messages[0].Cursor)
	}
}

// TestSchemaCheckFailsAsItIs: when Open's check that the schema fits this
// version's statements fails for another reason than the schema (here the
// context ends), Open reports that reason, not ErrForeign (the file may be
// fine), for a file it upgrades (which stays as it was) and for a file of
// this version.
func TestSchemaCheckFailsAsItIs(t *testing.T) {
	current := newFile(t)
	for _, f := range []struct {
		name, path string
		version    int
	}{{"upgrade", copyTestdata(t, "schema5.db"), 5}, {"current", current, SchemaVersion}} {
		t.Run(f.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			checked := false
			s, err := OpenConfig(ctx, f.path, Config{checkingSchema: func() { checked = true; cancel() }})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !checked {
				t.Fatalf("Open failed before the check: %v", err)
			}
			if !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrForeign) {
				t.Errorf("Open: %v; want context.Canceled, not ErrForeign", err)
			}
			if v := userVersion(t, f.path); v != f.version {
				t.Errorf("user_version %d, want %d", v, f.version)
			}
		})
	}
}

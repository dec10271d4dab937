package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// testdata/schema5.db was written by the schema-5 code: s1 and s2 settled
// (SEEN_BY_RECIPIENT, s1 on 2026-01-02 and s2 on 2036-01-02, so that a
// Prune between them deletes s1 only), p1 DELIVERED_TO_SERVER and p2 in
// transit, both unsettled and unlisted, cursors up to 11, and a session.

// TestMigrateSchema5: Open upgrades a schema-5 file to 6: the index of
// settled messages is gone, every record reads as before, Prune deletes
// what it deleted before, and a new message takes the next cursor.
func TestMigrateSchema5(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema5.db", 5)
	var n int
	if err := rawDB(t, p).QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'messages_settled'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("messages_settled: %d in sqlite_schema (%v), want 0", n, err)
	}
	seen := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient}
	for _, id := range []string{"s1", "s2"} {
		if h := historyOf(t, s, id); !slices.Equal(h, seen) {
			t.Errorf("history of %s: %v, want %v", id, h, seen)
		}
	}
	a := message("x").Owner
	if got := pendingIDs(t, s, a); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Errorf("Pending: %v, want [p1 p2]", got)
	}
	r, err := s.Message(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != tracking.DeliveredToServer || r.Seq != 3 {
		t.Errorf("p1: state %v, seq %d; want DELIVERED_TO_SERVER and 3", r.State, r.Seq)
	}
	k, err := s.Prune(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil || k != 1 {
		t.Errorf("Prune: %d (%v), want 1", k, err)
	}
	if _, err := s.Message(ctx, "s1"); err == nil {
		t.Error("s1 still there after Prune")
	}
	if h := historyOf(t, s, "s2"); !slices.Equal(h, seen) {
		t.Errorf("history of s2 after Prune: %v, want %v", h, seen)
	}
	b := &store.Batch{Messages: []store.Message{message("new")}}
	commitT(t, s, b)
	if b.Messages[0].Cursor != 12 {
		t.Errorf("new message's cursor %d, want 12", b.Messages[0].Cursor)
	}
	commitT(t, s, change("p2", tracking.Aborted))
	if got := pendingIDs(t, s, a); !slices.Equal(got, []string{"p1", "new"}) {
		t.Errorf("Pending after p2 aborted: %v, want [p1 new]", got)
	}
}

// TestSchema5WriterOnSchema6: the schema-5 code's settling and Prune run
// on an upgraded file (they name no index), and this version reads what
// they wrote.
func TestSchema5WriterOnSchema6(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema5.db", 5)
	old := olderWriter(t, p)
	// The schema-5 code's settling of p1 (a change row, then the row).
	if _, err := old.ExecContext(ctx, `INSERT INTO changes (cursor, message, state, settles, at, evidence) VALUES (12, 3, ?1, 1, 5, NULL);
		UPDATE messages SET state = ?1, settled = 1, updated = 5, raw = NULL, seq = coalesce(NULL, seq)
		WHERE n = 3 AND state = ?2 AND settled = 0`, int64(tracking.Aborted), int64(tracking.DeliveredToServer)); err != nil {
		t.Fatal(err)
	}
	// Its Prune's selection.
	var doomed []int64
	rows, err := old.QueryContext(ctx, `SELECT n FROM messages WHERE settled = 1 AND updated < ?1
		OR settled = 0 AND state IN (?2, ?3) AND deadline != 0 AND deadline < ?1 LIMIT ?4`,
		int64(1e15), int64(tracking.DeliveredToRecipient), int64(tracking.Error), 10)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		doomed = append(doomed, n)
	}
	rows.Close()
	if !slices.Equal(doomed, []int64{3}) {
		t.Errorf("the schema-5 Prune's selection: %v, want [3] (p1)", doomed)
	}
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.Aborted}
	if h := historyOf(t, s, "p1"); !slices.Equal(h, want) {
		t.Errorf("history of p1: %v, want %v", h, want)
	}
	if got := pendingIDs(t, s, message("x").Owner); !slices.Equal(got, []string{"p2"}) {
		t.Errorf("Pending: %v, want [p2]", got)
	}
}

// TestDevSchema4Refused: a file the development build of 2026-12-06
// stamped 4 (the trigger instead of the rename of changes.msg) is refused
// with ErrForeign and left as it was: not upgraded and stamped with the
// current version, to fail only later.
func TestDevSchema4Refused(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	db, err := sql.Open("sqlite", p)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{migrations[0], migrations[1], migrations[2],
		`CREATE TRIGGER changes_cursor BEFORE INSERT ON changes
			WHEN NEW.cursor IS NULL OR NEW.cursor <= coalesce((SELECT max(n) FROM messages), 0)
			BEGIN SELECT RAISE(ABORT, 'an older version'); END`,
		fmt.Sprintf("PRAGMA application_id=%d; PRAGMA user_version=4; PRAGMA journal_mode=WAL", appID),
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(ctx, p)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded")
	}
	if !errors.Is(err, store.ErrForeign) || !strings.Contains(err.Error(), "no column named message") {
		t.Errorf("Open: %v, want ErrForeign naming the missing column", err)
	}
	if v := userVersion(t, p); v != 4 {
		t.Errorf("user_version %d after the refused Open, want 4", v)
	}
	var n int
	if err := rawDB(t, p).QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name IN ('changes_cursor', 'messages_settled', 'listing')`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d of the trigger, messages_settled and listing (%v), want 2: the file changed", n, err)
	}
}

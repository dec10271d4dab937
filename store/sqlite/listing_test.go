package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// pendingIDs returns the ids Pending reports for owner, in its order.
func pendingIDs(t *testing.T, s *Store, owner store.Instance) []string {
	t.Helper()
	var ids []string
	if err := s.Pending(context.Background(), owner, func(m store.Message) error {
		ids = append(ids, m.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// listingOf returns listing.upto and how many unsettled messages are at or
// below it unlisted (the sweep's invariant: none).
func listingOf(t *testing.T, p string) (upto, strays int64) {
	t.Helper()
	db := rawDB(t, p)
	if err := db.QueryRow(`SELECT upto FROM listing`).Scan(&upto); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT count(*) FROM messages WHERE n <= ? AND settled = 0 AND listed = 0`, upto).Scan(&strays); err != nil {
		t.Fatal(err)
	}
	return upto, strays
}

// TestPendingUnlisted: messages written ahead and never touched since
// (unlisted, above listing.upto: a process killed before its recorder
// committed) are pending, in order with the listed ones, across Pending's
// chunks and after a reopen; a message that settled never is. More than a
// chunk of them are unlisted, interleaved with listed ones (as an older
// version's inserts are) and with another owner's.
func TestPendingUnlisted(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	cfg := Config{Retention: -1, listLag: 2500}
	s, err := OpenConfig(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	owner := message("x").Owner
	other := store.Instance{Account: "c@example.org", Resource: "r"}
	var want []string
	// 4,000 messages: every third settles, every fifth gets a sequence
	// number, one in 97 belongs to another owner; the rest stay as
	// written ahead.
	for i := range 4000 {
		id := fmt.Sprintf("m%05d", i)
		m := message(id)
		if i%97 == 0 {
			m.Owner = other
		}
		commitT(t, s, &store.Batch{Messages: []store.Message{m}})
		switch {
		case i%3 == 0:
			commitT(t, s, change(id, tracking.Aborted))
		case i%5 == 0:
			commitT(t, s, &store.Batch{Written: []store.Written{{ID: id, Seq: uint32(i)}}})
			fallthrough
		default:
			if m.Owner == owner {
				want = append(want, id)
			}
		}
	}
	// The last 40 written ahead, nothing committed after them.
	for i := 4000; i < 4040; i++ {
		id := fmt.Sprintf("m%05d", i)
		commitT(t, s, &store.Batch{Messages: []store.Message{message(id)}})
		want = append(want, id)
	}
	upto, strays := listingOf(t, p)
	if strays != 0 {
		t.Errorf("%d unsettled messages unlisted at or below listing.upto %d", strays, upto)
	}
	// Some above upto listed, as an older version inserts them.
	if _, err := s.w.ExecContext(ctx, `UPDATE messages SET listed = 1 WHERE n > ? AND n % 7 = 0`, upto); err != nil {
		t.Fatal(err)
	}
	var listedAbove, unlisted int64
	if err := rawDB(t, p).QueryRow(`SELECT count(*) FILTER (WHERE listed = 1), count(*) FILTER (WHERE listed = 0)
		FROM messages WHERE n > ? AND settled = 0 AND account = ? AND resource = ?`, upto, owner.Account, owner.Resource).
		Scan(&listedAbove, &unlisted); err != nil {
		t.Fatal(err)
	}
	if unlisted <= pendingChunk || listedAbove == 0 || int(upto) < pendingChunk {
		t.Fatalf("above upto %d: %d unlisted, %d listed; want more than %d unlisted, some listed", upto, unlisted, listedAbove, pendingChunk)
	}
	if got := pendingIDs(t, s, owner); !slices.Equal(got, want) {
		t.Errorf("Pending: %d messages, want %d\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenConfig(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pendingIDs(t, s, owner); !slices.Equal(got, want) {
		t.Errorf("Pending after reopening: %d messages, want %d", len(got), len(want))
	}
	if got := pendingIDs(t, s, other); len(got) == 0 {
		t.Error("Pending of the other owner: none")
	}
}

// TestSweep: a transaction that carries state changes lists the unsettled
// messages more than listLag cursors behind the highest message and raises
// listing.upto to that bound; lone write-aheads leave them unlisted until
// sweepEvery of them; a message that settles within the lag is never
// listed.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1, listLag: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	unlisted := func() (n int64) {
		t.Helper()
		if err := rawDB(t, p).QueryRow(`SELECT count(*) FROM messages WHERE listed = 0`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 10 { // n 1 to 10
		commitT(t, s, &store.Batch{Messages: []store.Message{message(fmt.Sprintf("a%d", i))}})
	}
	if n := unlisted(); n != 10 {
		t.Errorf("%d messages unlisted after 10 write-aheads, want 10", n)
	}
	// A change (cursor 11): the messages up to n 10-5 are listed.
	commitT(t, s, change("a3", tracking.DeliveredToServer))
	if n := unlisted(); n != 5 {
		t.Errorf("%d messages unlisted after a change, want 5 (n 6 to 10)", n)
	}
	if upto, strays := listingOf(t, p); upto != 5 || strays != 0 {
		t.Errorf("listing.upto %d with %d strays, want 5 and 0", upto, strays)
	}
	// b (n 12) settles (cursor 13) within the lag: never listed; the sweep
	// lists n 6 and 7.
	commitT(t, s, &store.Batch{Messages: []store.Message{message("b")}})
	commitT(t, s, change("b", tracking.Aborted))
	var listed int64
	if err := rawDB(t, p).QueryRow(`SELECT listed FROM messages WHERE id = 'b'`).Scan(&listed); err != nil || listed != 0 {
		t.Errorf("settled message b: listed %d (%v), want 0", listed, err)
	}
	if upto, strays := listingOf(t, p); upto != 7 || strays != 0 {
		t.Errorf("listing.upto %d with %d strays, want 7 and 0", upto, strays)
	}
	if got := pendingIDs(t, s, message("x").Owner); len(got) != 10 {
		t.Errorf("Pending: %v, want a0 to a9", got)
	}
	// sweepEvery write-aheads alone: the one that reaches it sweeps.
	for i := range sweepEvery + 1 {
		commitT(t, s, &store.Batch{Messages: []store.Message{message(fmt.Sprintf("c%d", i))}})
	}
	// Left unlisted: b, the 5 within the lag of that sweep, the one after.
	if n := unlisted(); n > 7 {
		t.Errorf("%d messages unlisted after %d write-aheads, want at most 7", n, sweepEvery+1)
	}
	if _, strays := listingOf(t, p); strays != 0 {
		t.Errorf("%d strays", strays)
	}
}

// testdata/schema4.db was written by the schema-4 code (before migration
// 4 → 5): messages p1 (n 1, written, DELIVERED_TO_SERVER), s1 (n 2,
// SEEN_BY_RECIPIENT, settled), p2 (n 5), p3 (n 7) of a@example.org and o1
// (n 6) of c@example.org/x, unsettled.

// TestMigrateSchema4: a schema-4 file is upgraded: its unsettled messages
// are listed and pending as before, listing.upto is its highest message,
// and a message written ahead after the upgrade is pending, unlisted, until
// a change lists it.
func TestMigrateSchema4(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema4.db", 4)
	a, c := store.Instance{Account: "a@example.org"}, store.Instance{Account: "c@example.org", Resource: "x"}
	if got := pendingIDs(t, s, a); !slices.Equal(got, []string{"p1", "p2", "p3"}) {
		t.Errorf("Pending of a: %v, want [p1 p2 p3]", got)
	}
	if got := pendingIDs(t, s, c); !slices.Equal(got, []string{"o1"}) {
		t.Errorf("Pending of c: %v, want [o1]", got)
	}
	var unlisted int64
	if err := rawDB(t, p).QueryRow(`SELECT count(*) FROM messages WHERE listed = 0`).Scan(&unlisted); err != nil || unlisted != 0 {
		t.Errorf("%d messages unlisted after the upgrade (%v), want 0", unlisted, err)
	}
	if upto, strays := listingOf(t, p); upto != 7 || strays != 0 {
		t.Errorf("listing.upto %d with %d strays, want 7 and 0", upto, strays)
	}
	r, err := s.Message(ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != tracking.DeliveredToServer || r.Seq != 1 || len(r.History) != 2 {
		t.Errorf("p1 after the upgrade: %+v", r)
	}
	b := &store.Batch{Messages: []store.Message{message("new")}}
	commitT(t, s, b)
	if b.Messages[0].Cursor != 8 {
		t.Errorf("new message's cursor %d, want 8", b.Messages[0].Cursor)
	}
	if got := pendingIDs(t, s, a); !slices.Equal(got, []string{"p1", "p2", "p3", "new"}) {
		t.Errorf("Pending of a with a message written ahead: %v, want [p1 p2 p3 new]", got)
	}
	commitT(t, s, change("p2", tracking.Aborted))
	if got := pendingIDs(t, s, a); !slices.Equal(got, []string{"p1", "p3", "new"}) {
		t.Errorf("Pending of a after p2 aborted: %v, want [p1 p3 new]", got)
	}
	if upto, strays := listingOf(t, p); upto != 7 || strays != 0 {
		t.Errorf("listing.upto %d with %d strays, want 7 (new is within the lag) and 0", upto, strays)
	}
}

// TestSchema4WriterOnUpgraded: a process still running the schema-4 code
// on an upgraded file keeps working with this version's writes: its
// message inserts (which do not know listed) are listed, so this version's
// Pending finds them, and its Pending query (settled = 0, no listed) finds
// the messages this version wrote ahead unlisted.
func TestSchema4WriterOnUpgraded(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema4.db", 4)
	old := olderWriter(t, p)
	commitT(t, s, &store.Batch{Messages: []store.Message{message("new")}})
	// The schema-4 code's message insert and its Pending query.
	if _, err := old.ExecContext(ctx, `INSERT INTO messages
		(n, id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq, state, settled, updated, first)
		VALUES (`+sqlLastCursor+` + 1, 'older', 'a@example.org', '', 'b@example.org', 0, '', '', x'00', 1, 0, NULL, 0, 0, 1, 0)
		ON CONFLICT (id) DO NOTHING`); err != nil {
		t.Fatal(err)
	}
	rows, err := old.QueryContext(ctx, `SELECT id FROM messages
		WHERE account = ? AND resource = ? AND settled = 0 AND n > ? ORDER BY n LIMIT ?`, "a@example.org", "", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	rows.Close()
	want := []string{"p1", "p2", "p3", "new", "older"}
	if !slices.Equal(got, want) {
		t.Errorf("the schema-4 Pending query: %v, want %v", got, want)
	}
	if got := pendingIDs(t, s, store.Instance{Account: "a@example.org"}); !slices.Equal(got, want) {
		t.Errorf("Pending: %v, want %v", got, want)
	}
	var listed int64
	if err := rawDB(t, p).QueryRow(`SELECT listed FROM messages WHERE id = 'older'`).Scan(&listed); err != nil || listed != 1 {
		t.Errorf("the schema-4 code's message: listed %d (%v), want 1", listed, err)
	}
}

// TestListingRowMissing: a file whose listing table lost its row (damaged
// by hand) still reports every unsettled message pending while it is open
// (the messages written ahead unlisted are read from the whole table), and
// Open refuses it, as it does a listing table with two rows.
func TestListingRowMissing(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1, listLag: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 6 {
		commitT(t, s, &store.Batch{Messages: []store.Message{message(fmt.Sprintf("a%d", i))}})
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM listing`); err != nil {
		t.Fatal(err)
	}
	// A sweep with the row gone: it lists what it lists, and raises nothing.
	commitT(t, s, change("a0", tracking.DeliveredToServer))
	for i := 6; i < 9; i++ {
		commitT(t, s, &store.Batch{Messages: []store.Message{message(fmt.Sprintf("a%d", i))}})
	}
	want := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"}
	if got := pendingIDs(t, s, message("x").Owner); !slices.Equal(got, want) {
		t.Errorf("Pending: %v, want %v", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, rows := range []int{0, 2} {
		db, err := sql.Open("sqlite", p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Exec(`DELETE FROM listing`)
		for range rows {
			if err == nil {
				_, err = db.Exec(`INSERT INTO listing (upto) VALUES (0)`)
			}
		}
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if s, err := OpenConfig(ctx, p, Config{Retention: -1}); !errors.Is(err, store.ErrForeign) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Open with %d listing rows: %v, want ErrForeign", rows, err)
		}
	}
}

// testdata/schema4-killed.db and its -wal are what the schema-4 code left
// when killed: the schema in the file, and in the WAL 30 messages k0-0 to
// k2-9 written ahead in three batches, then every third seen (settled) and
// every other acked.

// TestMigrateSchema4KilledWAL: Open folds the WAL a killed schema-4
// process left, then upgrades the file: its 20 unsettled messages are
// pending, in order, and listed.
func TestMigrateSchema4KilledWAL(t *testing.T) {
	ctx := context.Background()
	p := copyTestdata(t, "schema4-killed.db")
	wal, err := os.ReadFile(filepath.Join("testdata", "schema4-killed.db-wal"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+"-wal", wal, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenConfig(ctx, p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v := userVersion(t, p); v != SchemaVersion {
		t.Errorf("user_version %d, want %d", v, SchemaVersion)
	}
	var want []string
	for i := range 30 {
		if i%3 != 0 {
			want = append(want, fmt.Sprintf("k%d-%d", i/10, i%10))
		}
	}
	if got := pendingIDs(t, s, message("x").Owner); !slices.Equal(got, want) {
		t.Errorf("Pending: %v, want %v", got, want)
	}
	if upto, strays := listingOf(t, p); upto != 30 || strays != 0 {
		t.Errorf("listing.upto %d with %d strays, want 30 and 0", upto, strays)
	}
	r, err := s.Message(ctx, "k0-2")
	if err != nil || r.State != tracking.DeliveredToServer {
		t.Errorf("k0-2: %+v, %v; want DELIVERED_TO_SERVER", r, err)
	}
}

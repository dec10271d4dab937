package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func message(id string) store.Message {
	return store.Message{ID: id, Owner: store.Instance{Account: "a@example.org"}, To: "b@example.org",
		Raw: []byte(`<message id="` + id + `"/>`)}
}

// openTemp opens a store on a new file in a temporary directory.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenBadFiles opens files that are not stores: each gives a clear
// error at Open, never a panic, and the file is left as it was.
func TestOpenBadFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// A real store, to corrupt and to age.
	good := filepath.Join(dir, "good.db")
	s, err := Open(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message("m1")}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	img, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	corruptSchema := append([]byte(nil), img...)
	for i := 100; i < min(len(corruptSchema), 4096); i++ { // page 1 after the header: the schema
		corruptSchema[i] ^= 0x5a
	}

	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE photos (id INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	newer := filepath.Join(dir, "newer.db")
	write("newer.db", img)
	db, _ = sql.Open("sqlite", newer)
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, tc := range []struct {
		name, path string
		want       error
	}{
		{"text", write("text.db", []byte("hello, this is not a database\n")), store.ErrForeign},
		{"random", write("random.db", []byte(strings.Repeat("\x13\x37\xfe", 3000))), store.ErrForeign},
		{"header only", write("header.db", []byte("SQLite format 3\x00")), store.ErrForeign},
		{"truncated", write("trunc.db", img[:150]), store.ErrForeign},
		{"corrupt schema", write("corrupt.db", corruptSchema), store.ErrForeign},
		{"other application", other, store.ErrForeign},
		{"newer schema", newer, store.ErrNewerSchema},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(tc.path)
			s, err := Open(ctx, tc.path)
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error does not name the file: %v", err)
			}
			after, _ := os.ReadFile(tc.path)
			if string(before) != string(after) {
				t.Error("Open changed the file")
			}
		})
	}
	if _, err := Open(ctx, filepath.Join(dir, "missing", "x.db")); err == nil {
		t.Error("opened a file in a missing directory")
	}
	if _, err := Open(ctx, ""); err == nil {
		t.Error("opened an empty path")
	}
}

// TestReopen keeps what was committed across Close and Open, and opens an
// empty existing file as a new store.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	b := &store.Batch{Messages: []store.Message{message("m1")}, Changes: []store.Change{{ID: "m1", State: tracking.DeliveredToServer}}}
	if err := s.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := s.Message(ctx, "m1")
	if err != nil || r.State != tracking.DeliveredToServer || len(r.History) != 2 {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	if c, _ := s.LastCursor(ctx); c != b.Changes[0].Cursor {
		t.Errorf("LastCursor %d, want %d", c, b.Changes[0].Cursor)
	}
}

// TestDiskFull fills the database to a page limit (as a full disk does):
// Commit fails with an error, nothing is half-written, stored messages stay
// readable and changeable... once there is space again, commits succeed.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{pragmas: []string{"max_page_count(40)"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var full error
	n := 0
	for ; n < 10000; n++ {
		m := message(string(rune('a'+n%26)) + strings.Repeat("x", 30) + strconv.Itoa(n))
		m.Raw = make([]byte, 2000)
		if full = s.Commit(ctx, &store.Batch{Messages: []store.Message{m}}); full != nil {
			break
		}
	}
	if full == nil || !strings.Contains(full.Error(), "full") {
		t.Fatalf("after %d messages: %v, want a disk-full error", n, full)
	}
	// The failed message is not there; earlier ones are.
	last, _ := s.LastCursor(ctx)
	all, err := s.Changes(ctx, store.FeedQuery{Limit: store.MaxFeedLimit})
	if err != nil || len(all) != n {
		t.Fatalf("feed holds %d changes for %d messages (%v)", len(all), n, err)
	}
	// Space comes back.
	if _, err := s.w.ExecContext(ctx, "PRAGMA max_page_count = 100000"); err != nil {
		t.Fatal(err)
	}
	b := &store.Batch{Messages: []store.Message{message("after")}, Changes: []store.Change{{ID: all[0].ID, State: tracking.DeliveredToServer}}}
	if err := s.Commit(ctx, b); err != nil {
		t.Fatalf("after space came back: %v", err)
	}
	if b.Messages[0].Cursor <= last || b.Changes[0].Cursor == 0 {
		t.Errorf("cursors after recovery: %d %d (last %d)", b.Messages[0].Cursor, b.Changes[0].Cursor, last)
	}
}

// TestReadOnly makes the database refuse writes: Commit fails, and works
// again once the database is writable.
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message("m1")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, "PRAGMA query_only = 1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message("m2")}}); err == nil {
		t.Fatal("committed to a read-only database")
	}
	if _, _, err := s.ClaimKey(ctx, store.Key{Scope: "s", Name: "k", Value: "v"}); err == nil {
		t.Error("claimed a key in a read-only database")
	}
	if _, err := s.Message(ctx, "m1"); err != nil {
		t.Errorf("reading a read-only database: %v", err)
	}
	if _, err := s.w.ExecContext(ctx, "PRAGMA query_only = 0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message("m2")}}); err != nil {
		t.Fatalf("after the database became writable: %v", err)
	}
}

// TestPrunerAtOpen: the pruner Open starts prunes, at once, the messages
// settled longer ago than Config.Retention and keeps the others.
func TestPrunerAtOpen(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	old, recent := message("old"), message("recent")
	old.State, old.Created = tracking.Closed, time.Now().Add(-2*time.Hour)
	recent.State, recent.Created = tracking.Closed, time.Now().Add(-time.Minute)
	commitT(t, s, &store.Batch{Messages: []store.Message{old, recent, message("pending")}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenConfig(ctx, p, Config{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Polled until the pruner's first pass removed "old"; the deadline
	// only guards against a hang.
	guard := time.Now().Add(time.Minute)
	for {
		_, err := s.Message(ctx, "old")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(guard) {
			t.Fatal("the settled message older than Retention is still there")
		}
		runtime.Gosched()
	}
	for _, id := range []string{"recent", "pending"} {
		if _, err := s.Message(ctx, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

// TestMissingTableForeign: a file of this version that lacks one of its
// tables, or whose listing table does not hold one row, is refused with
// ErrForeign (SQLite's "no such table" is a schema that does not fit; any
// other failure of the check is reported as it is, see
// TestSchemaCheckFailsAsItIs), and left as it was.
func TestMissingTableForeign(t *testing.T) {
	damage := map[string]string{"listing with two rows": `INSERT INTO listing (upto) VALUES (0)`}
	for _, tb := range tables {
		damage["no "+tb] = "DROP TABLE " + tb
	}
	for name, q := range damage {
		t.Run(name, func(t *testing.T) {
			p := newFile(t)
			db, err := sql.Open("sqlite", p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = db.Exec(q)
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(context.Background(), p)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, store.ErrForeign) {
				t.Errorf("Open: %v, want ErrForeign", err)
			}
			if v := userVersion(t, p); v != SchemaVersion {
				t.Errorf("user_version %d, want %d", v, SchemaVersion)
			}
		})
	}
}

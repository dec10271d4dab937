package xmpptrack

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, to write a row as an older version did

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestStoreDialLegacyID: Dial on an SQLite store holding a message stored
// before ids had to be XML text (Send accepted an id holding U+0001 then)
// settles it like any other: both unsettled messages whose window ended,
// the legacy one and a valid one, get TIMED_OUT recorded, and Dial
// succeeds. A store refusing the change of a record it already holds
// would fail the whole batch of changes Dial records, and Dial with it.
func TestStoreDialLegacyID(t *testing.T) {
	const legacy = "old-\x01-id"
	path := filepath.Join(t.TempDir(), "x.db")
	deadline := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	owner := store.Instance{Account: testJID.Bare().String(), Resource: testJID.Resourcepart()}
	st := openStorePath(t, path)
	msg := func(id string) store.Message {
		return store.Message{ID: id, Owner: owner, To: bob.String(), Deadline: deadline,
			Raw: []byte(`<message xmlns="jabber:client" to="bob@example.org" id="` + id + `"><body>x</body></message>`)}
	}
	// The store refuses the legacy id now, so it is written under a valid
	// id of the same length and renamed with SQL on the closed file.
	if err := st.Commit(context.Background(), &store.Batch{Messages: []store.Message{msg("valid"), msg("old-_-id")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE messages SET id = ? WHERE id = 'old-_-id'`, legacy)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("renamed %d rows, %v", n, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	st = openStorePath(t, path)
	c, _ := newPeer(t, Config{Store: st})
	for _, id := range []string{"valid", legacy} {
		s, err := c.Status(waitCtx(t), id)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if s.State != tracking.TimedOut || !s.Settled || len(s.History) != 2 || !s.History[1].At.Equal(deadline) {
			t.Errorf("%q: %+v, want TIMED_OUT recorded at the deadline", id, s)
		}
	}
}

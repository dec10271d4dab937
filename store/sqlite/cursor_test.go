package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestCursorOtherWriter: the committer keeps the highest cursor from one
// transaction to the next; another Store value on the file (another
// connection) commits messages and changes in between, in turns with it.
// Every cursor is above the one committed before it, whichever Store
// value committed it, and the feed reads them all back in that order.
func TestCursorOtherWriter(t *testing.T) {
	a, b := twoWriters(t, Config{})
	var want []int64
	commit := func(s *Store, bt *store.Batch) {
		t.Helper()
		commitT(t, s, bt)
		for _, m := range bt.Messages {
			want = append(want, m.Cursor)
		}
		for _, c := range bt.Changes {
			want = append(want, c.Cursor)
		}
	}
	for i := range 4 {
		id := fmt.Sprintf("m%d", i)
		other := fmt.Sprintf("o%d", i)
		commit(a, &store.Batch{Messages: []store.Message{message(id)}})
		commit(b, change(id, tracking.DeliveredToServer)) // a change only: no message row to collide with
		commit(a, &store.Batch{Messages: []store.Message{message(id + "x")}})
		commit(b, &store.Batch{Messages: []store.Message{message(other)}})
		commit(a, change(other, tracking.DeliveredToServer))
		commit(a, change(id, tracking.DeliveredToRecipient))
	}
	for i := 1; i < len(want); i++ {
		if want[i] <= want[i-1] {
			t.Fatalf("cursors in commit order %v: %d after %d", want, want[i], want[i-1])
		}
	}
	var got []int64
	feed, err := a.Changes(t.Context(), store.FeedQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range feed {
		got = append(got, c.Cursor)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("feed's cursors %v, want %v", got, want)
	}
}

// TestCursorKept: a Store value alone on its file reads the highest cursor
// from the tables once, at its first commit; its later transactions
// (write-aheads and changes) take it from the last one.
func TestCursorKept(t *testing.T) {
	s, err := OpenConfig(t.Context(), filepath.Join(t.TempDir(), "s.db"), Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 50 {
		id := fmt.Sprintf("m%d", i)
		commitT(t, s, &store.Batch{Messages: []store.Message{message(id)}})
		commitT(t, s, change(id, tracking.DeliveredToServer))
	}
	if n := s.cursorReads.Load(); n != 1 {
		t.Errorf("the highest cursor read %d times from the tables in 100 transactions, want 1", n)
	}
}

// TestCursorAfterOtherPrune: another Store value prunes the messages that
// hold the highest cursor; this one's next message still takes a cursor
// above it (Prune keeps it as a tombstone, and the data version tells this
// one to read it again).
func TestCursorAfterOtherPrune(t *testing.T) {
	a, b := twoWriters(t, Config{Retention: -1})
	x := message("x")
	x.Deadline = time.Now().Add(time.Minute)
	commitT(t, a, &store.Batch{Messages: []store.Message{x}})
	ch := change("x", tracking.DeliveredToRecipient)
	commitT(t, a, ch)
	if k, err := b.Prune(t.Context(), time.Now().Add(time.Hour)); err != nil || k != 1 {
		t.Fatalf("pruned %d (%v), want 1", k, err)
	}
	reads := a.cursorReads.Load()
	y := &store.Batch{Messages: []store.Message{message("y")}}
	commitT(t, a, y)
	if y.Messages[0].Cursor <= ch.Changes[0].Cursor {
		t.Errorf("cursor %d after the pruned change's %d", y.Messages[0].Cursor, ch.Changes[0].Cursor)
	}
	if a.cursorReads.Load() != reads+1 {
		t.Errorf("the highest cursor was not read again after another Store value's Prune")
	}
}

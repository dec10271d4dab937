package sqlite

import (
	"fmt"
	"testing"

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

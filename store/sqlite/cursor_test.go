package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
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

// TestCursorAfterPrune: another Store value on the file commits the
// messages that hold the highest cursor, and they are pruned: by that
// Store value ("other"), or by this one's own Prune ("own": what its
// pruner runs, on the committer's connection). This one's next commits
// take cursors above theirs (Prune keeps the highest as a tombstone, and
// the file's data version tells the committer to read it again rather
// than trust the cursor it kept), so that a follower, who read the pruned
// messages' entries before they went, reads them: the cursors are
// unique and increasing in commit order, and the follower reads them all.
// With the committer trusting its kept cursor, this one's next message
// takes the pruned message's cursor, which no row holds any more: no
// error, and the follower never reads it.
func TestCursorAfterPrune(t *testing.T) {
	for _, by := range []string{"other", "own"} {
		t.Run(by, func(t *testing.T) {
			a, b := twoWriters(t, Config{Retention: -1})
			pruner := a
			if by == "other" {
				pruner = b
			}
			f := &follower{s: a}
			var want []int64
			commit := func(s *Store, line string) {
				t.Helper()
				want = append(want, commitLine(t, s, line)...)
				f.read(t)
				checkFeed(t, want, f.got)
			}
			for i := range 3 {
				x, y, z := fmt.Sprint("x", i), fmt.Sprint("y", i), fmt.Sprint("z", i)
				commit(a, "+"+x)
				commit(a, x+":SEEN_BY_RECIPIENT")
				// The other's message, settled: the highest cursor.
				commit(b, "+"+y+" "+y+":DELIVERED_TO_SERVER")
				commit(b, y+":SEEN_BY_RECIPIENT")
				if k, err := pruner.Prune(t.Context(), time.Now().Add(time.Hour)); err != nil || k != 2 {
					t.Fatalf("pruned %d (%v), want 2", k, err)
				}
				f.read(t)
				reads := a.cursorReads.Load()
				commit(a, "+"+z)
				if a.cursorReads.Load() != reads+1 {
					t.Errorf("round %d: the highest cursor was not read again after the Prune", i)
				}
				commit(a, z+":DELIVERED_TO_SERVER")
			}
		})
	}
}

// commitLine commits the batch that line describes (see lineBatch) through
// s and returns the cursors it took, in the order it took them.
func commitLine(t *testing.T, s *Store, line string) []int64 {
	t.Helper()
	b, err := lineBatch(line)
	if err != nil {
		t.Fatal(err)
	}
	commitT(t, s, b)
	return cursorsOf(b)
}

// lineBatch returns the batch that line describes, word by word: "+id" a
// new message id, "id:STATE" a change of message id to the state of that
// name (such as DELIVERED_TO_SERVER).
func lineBatch(line string) (*store.Batch, error) {
	b := &store.Batch{}
	for w := range strings.FieldsSeq(line) {
		if id, ok := strings.CutPrefix(w, "+"); ok {
			b.Messages = append(b.Messages, message(id))
			continue
		}
		id, name, _ := strings.Cut(w, ":")
		st, ok := tracking.ParseState(name)
		if !ok {
			return nil, fmt.Errorf("word %q: no state %q", w, name)
		}
		b.Changes = append(b.Changes, store.Change{ID: id, State: st})
	}
	return b, nil
}

// cursorsOf returns the cursors a committed batch took, in the order its
// transaction took them: its messages', then its changes' (see apply). A
// change that changed nothing has 0.
func cursorsOf(b *store.Batch) []int64 {
	var c []int64
	for _, m := range b.Messages {
		c = append(c, m.Cursor)
	}
	for _, ch := range b.Changes {
		c = append(c, ch.Cursor)
	}
	return c
}

// follower reads a store's feed as a follower does: the changes after the
// last cursor it read, a page at a time.
type follower struct {
	s    *Store
	last int64
	got  []int64 // the cursors read, in order
}

// read reads the changes after the last one read, until there are none.
func (f *follower) read(t *testing.T) {
	t.Helper()
	if err := f.poll(); err != nil {
		t.Fatal(err)
	}
}

// poll is read, its error returned (for a goroutine of its own).
func (f *follower) poll() error {
	for {
		feed, err := f.s.Changes(context.Background(), store.FeedQuery{After: f.last, Limit: 64})
		if err != nil || len(feed) == 0 {
			return err
		}
		for _, c := range feed {
			f.got = append(f.got, c.Cursor)
		}
		f.last = feed[len(feed)-1].Cursor
	}
}

// checkFeed checks that want, the cursors the commits took in commit
// order, increase, and that got, what a follower read, is want.
func checkFeed(t *testing.T, want, got []int64) {
	t.Helper()
	checkIncreasing(t, want)
	if !slices.Equal(got, want) {
		t.Fatalf("the follower read the cursors %v, want %v", got, want)
	}
}

// checkIncreasing checks that cursors, taken in commit order, increase.
func checkIncreasing(t *testing.T, cursors []int64) {
	t.Helper()
	for i := 1; i < len(cursors); i++ {
		if cursors[i] <= cursors[i-1] {
			t.Fatalf("cursors in commit order %v: %d after %d", cursors, cursors[i], cursors[i-1])
		}
	}
}

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func commitT(t *testing.T, s *Store, b *store.Batch) {
	t.Helper()
	if err := s.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

func change(id string, st tracking.MessageState) *store.Batch {
	return &store.Batch{Changes: []store.Change{{ID: id, State: st}}}
}

func historyOf(t *testing.T, s *Store, id string) []tracking.MessageState {
	t.Helper()
	r, err := s.Message(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var h []tracking.MessageState
	for _, c := range r.History {
		h = append(h, c.State)
	}
	return h
}

// twoWriters opens two Store values on one new file: a with cfg, b with the
// defaults but cfg's Retention (a pruner of its own would prune at a moment
// of its own). Both are closed when the test ends.
func twoWriters(t *testing.T, cfg Config) (a, b *Store) {
	t.Helper()
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	a, err := OpenConfig(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = OpenConfig(ctx, p, Config{Retention: cfg.Retention})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// TestCacheOtherWriter: another Store value on the same file settles a
// message whose state this one caches. A later change through this one
// sees the settled row, not its cache, and is refused.
func TestCacheOtherWriter(t *testing.T) {
	ctx := context.Background()
	a, b := twoWriters(t, Config{})
	commitT(t, a, &store.Batch{Messages: []store.Message{message("m")}})
	commitT(t, a, change("m", tracking.DeliveredToServer))
	commitT(t, b, change("m", tracking.SeenByRecipient))
	late := change("m", tracking.DeliveredToRecipient)
	commitT(t, a, late)
	if late.Changes[0].Cursor != 0 {
		t.Errorf("a change of a settled message was applied (cursor %d)", late.Changes[0].Cursor)
	}
	r, err := a.Message(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.SeenByRecipient}
	if got := historyOf(t, a, "m"); r.State != tracking.SeenByRecipient || !r.Settled || !slices.Equal(got, want) {
		t.Errorf("state %v settled %v history %v, want SEEN_BY_RECIPIENT settled %v", r.State, r.Settled, got, want)
	}
}

// TestCacheRowReused: a cached message is pruned and a new message gets
// its row number; a change of the pruned message must not move the new one.
func TestCacheRowReused(t *testing.T) {
	ctx := context.Background()
	s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "s.db"), Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := message("x")
	x.Deadline = time.Now().Add(time.Minute)
	commitT(t, s, &store.Batch{Messages: []store.Message{x}})
	commitT(t, s, change("x", tracking.DeliveredToRecipient))
	if n, err := s.Prune(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	commitT(t, s, &store.Batch{Messages: []store.Message{message("y")}})
	commitT(t, s, change("y", tracking.DeliveredToRecipient))
	late := change("x", tracking.SeenByRecipient)
	commitT(t, s, late)
	if late.Changes[0].Cursor != 0 {
		t.Errorf("a change of a pruned message was applied (cursor %d)", late.Changes[0].Cursor)
	}
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToRecipient}
	if got := historyOf(t, s, "y"); !slices.Equal(got, want) {
		t.Errorf("history of y %v, want %v", got, want)
	}
	if _, err := s.Message(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pruned message: %v", err)
	}
}

// TestCacheRolledBack: a transaction that applied a change and then failed
// leaves neither the change nor a trace of it in the cache.
func TestCacheRolledBack(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	commitT(t, s, &store.Batch{Messages: []store.Message{message("m")}})
	boom := errors.New("boom")
	// The committer is idle between commits; the test stands in for it.
	err := s.write(ctx, func(w *writer) error {
		if err := w.apply(change("m", tracking.SeenByRecipient)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("write: %v", err)
	}
	if ms, ok := s.states.get("m"); !ok || ms.state != tracking.InTransit || ms.settled {
		t.Errorf("cache after the rollback: %+v %v, want IN_TRANSIT", ms, ok)
	}
	commitT(t, s, change("m", tracking.DeliveredToServer))
	want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer}
	if got := historyOf(t, s, "m"); !slices.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
}

// TestDuplicateWritesNothing: a batch whose one new message exists fails
// with ErrExists and writes none of its changes, sequence numbers and
// sessions, alone and in a group with other batches.
func TestDuplicateWritesNothing(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	owner := store.Instance{Account: "a@example.org"}
	commitT(t, s, &store.Batch{Messages: []store.Message{message("m"), message("other")}})
	dup := &store.Batch{Messages: []store.Message{message("m")},
		Changes:  []store.Change{{ID: "other", State: tracking.DeliveredToServer}},
		Written:  []store.Written{{ID: "other", Seq: 7}},
		Sessions: []store.Session{{Owner: owner, ID: "sm"}}}
	if err := s.Commit(ctx, dup); !errors.Is(err, store.ErrExists) {
		t.Fatalf("duplicate: %v, want ErrExists", err)
	}
	if dup.Changes[0].Cursor != 0 {
		t.Errorf("refused batch has a cursor %d", dup.Changes[0].Cursor)
	}
	r, err := s.Message(ctx, "other")
	if err != nil || r.State != tracking.InTransit || r.Written || len(r.History) != 1 {
		t.Errorf("refused batch changed another message: %+v %v", r.Message, err)
	}
	if _, err := s.Session(ctx, owner); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused batch saved a session: %v", err)
	}
}

// TestCacheOtherWriterMany: as TestCacheOtherWriter, with a message the
// other writer settled among the 20 of each kind of row update in one
// transaction (a sequence number, a change that does not settle, one that
// settles). The transaction is refused and written again with the cache
// emptied: every other message moves, the settled ones keep the other
// writer's state and history (TestCacheOtherWriterUnsettled covers a
// stale state that is not settled).
func TestCacheOtherWriterMany(t *testing.T) {
	ctx := context.Background()
	a, b := twoWriters(t, Config{})
	const n = 20
	ids := func(kind string) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("%s%d", kind, i))
		}
		return s
	}
	for _, kind := range []string{"q", "u", "s"} {
		for _, id := range ids(kind) {
			commitT(t, a, &store.Batch{Messages: []store.Message{message(id)}})
			if kind != "q" {
				commitT(t, a, change(id, tracking.DeliveredToServer))
			}
		}
	}
	// b settles the 13th of each kind behind a's cache.
	for _, kind := range []string{"q", "u", "s"} {
		commitT(t, b, change(kind+"13", tracking.SeenByRecipient))
	}
	batch := &store.Batch{}
	for i, id := range ids("q") {
		batch.Written = append(batch.Written, store.Written{ID: id, Seq: uint32(i + 1)})
	}
	for _, id := range ids("u") {
		batch.Changes = append(batch.Changes, store.Change{ID: id, State: tracking.DeliveredToRecipient})
	}
	for _, id := range ids("s") {
		batch.Changes = append(batch.Changes, store.Change{ID: id, State: tracking.SeenByRecipient})
	}
	commitT(t, a, batch)
	for _, kind := range []string{"q", "u", "s"} {
		for i, id := range ids(kind) {
			r, err := a.Message(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]tracking.MessageState{"q": tracking.InTransit, "u": tracking.DeliveredToRecipient,
				"s": tracking.SeenByRecipient}[kind]
			settled := kind == "s"
			if i == 13 {
				want, settled = tracking.SeenByRecipient, true
			}
			if r.State != want || r.Settled != settled {
				t.Errorf("%s: %v settled %v, want %v settled %v", id, r.State, r.Settled, want, settled)
			}
			if kind == "q" && i != 13 && r.Seq != uint32(i+1) {
				t.Errorf("%s: sequence number %d, want %d", id, r.Seq, i+1)
			}
			if i == 13 {
				want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.SeenByRecipient}
				if kind == "q" {
					want = []tracking.MessageState{tracking.InTransit, tracking.SeenByRecipient}
				}
				if got := historyOf(t, a, id); !slices.Equal(got, want) {
					t.Errorf("%s: history %v, want %v", id, got, want)
				}
			}
		}
	}
}

// TestCacheOtherWriterUnsettled: another Store value moves a message
// forward without settling it (DELIVERED_TO_RECIPIENT) behind this one's
// cache (IN_TRANSIT). A change through this one is applied to the stored
// state, not the cached one: an ack does not move it back, and an abort or
// a timeout is judged against DELIVERED_TO_RECIPIENT (the row updates check
// the state they replace).
func TestCacheOtherWriterUnsettled(t *testing.T) {
	for _, late := range []tracking.MessageState{tracking.DeliveredToServer, tracking.Aborted, tracking.TimedOut} {
		t.Run(late.String(), func(t *testing.T) {
			ctx := context.Background()
			a, b := twoWriters(t, Config{})
			commitT(t, a, &store.Batch{Messages: []store.Message{message("m")}}) // a caches IN_TRANSIT
			commitT(t, b, change("m", tracking.DeliveredToRecipient))
			commitT(t, a, change("m", late))
			r, err := a.Message(ctx, "m")
			if err != nil {
				t.Fatal(err)
			}
			// What a's change gives on b's row, without a cache.
			to, settles, _ := store.Next(tracking.DeliveredToRecipient, false, late)
			want := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToRecipient}
			if to != tracking.DeliveredToRecipient {
				want = append(want, to)
			}
			if got := historyOf(t, a, "m"); r.State != to || r.Settled != settles || !slices.Equal(got, want) {
				t.Errorf("state %v settled %v history %v, want %v settled %v %v", r.State, r.Settled, got, to, settles, want)
			}
		})
	}
}

// TestGroupRetryExists: a group of batches fails (here its third batch),
// and each is written again on its own. A batch refused in the group
// because an earlier batch of the group holds its message id is written
// again too: when that earlier batch fails on its own, the later one
// stores the message instead of being told it exists.
func TestGroupRetryExists(t *testing.T) {
	ctx := context.Background()
	errFault := errors.New("fault")
	first, applied := message("x"), 0
	s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "s.db"), Config{failApply: func(b *store.Batch) error {
		switch {
		case len(b.Messages) == 1 && b.Messages[0].ID == "bad":
			return errFault
		case len(b.Messages) == 1 && &b.Messages[0].Raw[0] == &first.Raw[0]:
			if applied++; applied > 1 {
				return errFault // the first batch fails on its own
			}
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	second := message("x")
	reqs := []*groupcommit.Request{
		groupcommit.NewRequest(&store.Batch{Messages: []store.Message{first}}),
		groupcommit.NewRequest(&store.Batch{Messages: []store.Message{second}}),
		groupcommit.NewRequest(&store.Batch{Messages: []store.Message{message("bad")}}),
	}
	s.commitGroup(reqs)
	var got []error
	for _, r := range reqs {
		got = append(got, r.Wait())
	}
	if !errors.Is(got[0], errFault) || got[1] != nil || !errors.Is(got[2], errFault) {
		t.Fatalf("outcomes %v, want the fault, success, the fault", got)
	}
	if _, err := s.Message(ctx, "x"); err != nil {
		t.Errorf("x, stored by the second batch: %v", err)
	}
}

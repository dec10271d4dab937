package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func testFeedOrder(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	if c, err := s.LastCursor(ctxT(t)); err != nil || c != 0 {
		t.Fatalf("empty feed: LastCursor %d, %v", c, err)
	}
	if cs, err := s.Changes(ctxT(t), store.FeedQuery{}); err != nil || len(cs) != 0 {
		t.Fatalf("empty feed: %v, %v", cs, err)
	}
	var want []int64
	for i := range 10 {
		m := insert(t, s, msg(alice, fmt.Sprint("f", i)))
		want = append(want, m[0].Cursor)
		if i%2 == 0 {
			want = append(want, record(t, s, fmt.Sprint("f", i), tracking.DeliveredToServer, store.Evidence{}).Cursor)
		}
	}
	got := all(t, s, store.FeedQuery{Limit: 3})
	var cursors []int64
	for _, c := range got {
		cursors = append(cursors, c.Cursor)
	}
	if !slices.Equal(cursors, want) {
		t.Fatalf("feed cursors %v\nwant (commit order) %v", cursors, want)
	}
	if got[0].ID != "f0" || got[0].State != tracking.InTransit || got[1].State != tracking.DeliveredToServer || got[1].Owner != alice || got[1].To != "bob@example.net" {
		t.Errorf("feed events %+v %+v", got[0], got[1])
	}
	last, err := s.LastCursor(ctxT(t))
	if err != nil || last != want[len(want)-1] {
		t.Errorf("LastCursor %d, %v; want %d", last, err, want[len(want)-1])
	}
	cs, _ := s.Changes(ctxT(t), store.FeedQuery{After: want[4], Limit: 2})
	if len(cs) != 2 || cs[0].Cursor != want[5] || cs[1].Cursor != want[6] {
		t.Errorf("resume after %d: %+v", want[4], cs)
	}
	if cs, _ := s.Changes(ctxT(t), store.FeedQuery{After: last}); len(cs) != 0 {
		t.Errorf("after the last cursor: %d changes", len(cs))
	}
	if cs, _ := s.Changes(ctxT(t), store.FeedQuery{}); len(cs) != len(want) {
		t.Errorf("default limit returned %d of %d", len(cs), len(want))
	}
}

func testFeedFilters(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	for i, ch := range []string{"a", "b", "", "a", "c"} {
		m := msg(alice, fmt.Sprint("c", i))
		if i == 4 {
			m.Owner = carol
		}
		m.Channel = ch
		insert(t, s, m)
		record(t, s, m.ID, tracking.DeliveredToServer, store.Evidence{})
	}
	ids := func(cs []store.Change) (out []string) {
		for _, c := range cs {
			out = append(out, c.ID+"/"+c.State.String())
		}
		return out
	}
	got := ids(all(t, s, store.FeedQuery{Channels: []string{"a", "c"}, Limit: 1}))
	want := []string{"c0/IN_TRANSIT", "c0/DELIVERED_TO_SERVER", "c3/IN_TRANSIT", "c3/DELIVERED_TO_SERVER", "c4/IN_TRANSIT", "c4/DELIVERED_TO_SERVER"}
	if !slices.Equal(got, want) {
		t.Errorf("channels a,c: %v", got)
	}
	got = ids(all(t, s, store.FeedQuery{Owner: carol}))
	if !slices.Equal(got, want[4:]) {
		t.Errorf("owner carol: %v", got)
	}
	cs, _ := s.Changes(ctxT(t), store.FeedQuery{Channels: []string{"a"}})
	if len(cs) != 4 || cs[0].Channel != "a" {
		t.Errorf("channel a: %v", ids(cs))
	}
}

// FeedNeverSkips has 8 writers on two handles commit with random delays
// while a follower reads the feed: the follower must see every event
// exactly once, with growing cursors. It is exported so that an
// implementation can run it again with a fault hook that delays its commits.
func FeedNeverSkips(t *testing.T, open Open) {
	s, name := fresh(t, open)
	handles := []store.Store{s, opened(t, open, name)}
	const writers, commits = 8, 40
	type key struct {
		id string
		st tracking.MessageState
	}
	committed := make(chan key, writers*commits*4)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	for w := range writers {
		h := handles[w%2]
		rng := rand.New(rand.NewPCG(uint64(w), 1))
		wg.Go(func() {
			for i := range commits {
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
				id := fmt.Sprintf("w%d-%d", w, i)
				b := &store.Batch{Messages: []store.Message{msg(alice, id)}}
				if i > 0 {
					prev := fmt.Sprintf("w%d-%d", w, i-1)
					b.Changes = []store.Change{{ID: prev, State: tracking.DeliveredToServer}}
					if rng.IntN(2) == 0 {
						b.Changes = append(b.Changes, store.Change{ID: prev, State: tracking.DeliveredToRecipient})
					}
				}
				if err := h.Commit(ctx, b); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				committed <- key{id, tracking.InTransit}
				for _, c := range b.Changes {
					if c.Cursor == 0 {
						t.Errorf("writer %d: change not applied", w)
					}
					committed <- key{c.ID, c.State}
				}
			}
		})
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	seen := map[key]int64{}
	var after int64
	follow := func() {
		cs, err := s.Changes(ctx, store.FeedQuery{After: after, Limit: 50})
		if err != nil {
			t.Fatalf("follower: %v", err)
		}
		for _, c := range cs {
			if c.Cursor <= after {
				t.Fatalf("follower: cursor %d after %d", c.Cursor, after)
			}
			k := key{c.ID, c.State}
			if prev, dup := seen[k]; dup {
				t.Fatalf("follower: %v seen twice (cursors %d, %d)", k, prev, c.Cursor)
			}
			seen[k] = c.Cursor
			after = c.Cursor
		}
	}
	for done := false; !done; {
		select {
		case <-writersDone:
			done = true
		default:
		}
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := s.Wait(wctx, after)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait: %v", err)
		}
		follow()
	}
	// Every commit has returned: read on until a page brings nothing new.
	// The follower may trail the writers by any number of pages (a slow
	// machine, or writers faster than its reads); what it must never do
	// is step over a change.
	for n := -1; n != len(seen); {
		n = len(seen)
		follow()
	}
	close(committed)
	n := 0
	for k := range committed {
		n++
		if _, ok := seen[k]; !ok {
			t.Errorf("follower missed %v", k)
		}
	}
	if n != len(seen) {
		t.Errorf("follower saw %d events, writers committed %d", len(seen), n)
	}
}

func testWait(t *testing.T, open Open) {
	s, name := fresh(t, open)
	other := opened(t, open, name)
	ctx := ctxT(t)
	insert(t, s, msg(alice, "w0"))
	last, _ := s.LastCursor(ctx)
	if err := s.Wait(ctx, last-1); err != nil {
		t.Fatalf("Wait with a change already there: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Wait(cctx, last); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended context: %v", err)
	}
	for i, waiter := range []store.Store{s, other} {
		done := make(chan error, 1)
		ready := make(chan struct{})
		go func() { close(ready); done <- waiter.Wait(ctx, last) }()
		<-ready
		m := insert(t, s, msg(alice, fmt.Sprint("w", i+1)))
		if err := <-done; err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
		cs, err := waiter.Changes(ctx, store.FeedQuery{After: last})
		if err != nil || len(cs) == 0 || cs[0].Cursor != m[0].Cursor {
			t.Fatalf("waiter %d woken, but Changes gave %v, %v", i, cs, err)
		}
		last = m[0].Cursor
	}
}

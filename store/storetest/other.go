package storetest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func testRetention(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	ctx := ctxT(t)
	now := time.Now()
	old, recent := now.Add(-8*24*time.Hour), now.Add(-time.Hour)
	ancient := msg(alice, "unsettled")
	ancient.Created = now.Add(-30 * 24 * time.Hour)
	windowEnded := func(id string, deadline time.Time) store.Message {
		m := msg(alice, id)
		m.Deadline = deadline
		return m
	}
	insert(t, s, ancient, msg(alice, "old1"), msg(alice, "old2"), msg(alice, "recent"), msg(alice, "ackedOld"),
		windowEnded("oldReceipt", old), windowEnded("oldError", old), windowEnded("liveReceipt", now.Add(time.Hour)),
		windowEnded("ackedWindowEnded", old))
	commit(t, s, &store.Batch{Changes: []store.Change{
		{ID: "oldReceipt", State: tracking.DeliveredToRecipient, At: old},
		{ID: "oldError", State: tracking.Error, At: old},
		{ID: "liveReceipt", State: tracking.DeliveredToRecipient, At: old},
		{ID: "ackedWindowEnded", State: tracking.DeliveredToServer, At: old},
		{ID: "old1", State: tracking.SeenByRecipient, At: old},
		{ID: "old2", State: tracking.DeliveredToRecipient, At: old},
		{ID: "old2", State: tracking.TimedOut, At: old},
		{ID: "recent", State: tracking.Closed, At: recent},
		{ID: "ackedOld", State: tracking.DeliveredToServer, At: old},
	}})
	expired := store.Key{Scope: "tok", Name: "k-old", Value: "v1", Expires: now.Add(-time.Minute)}
	live := store.Key{Scope: "tok", Name: "k-live", Value: "v2", Expires: now.Add(time.Hour)}
	for _, k := range []store.Key{expired, live} {
		if _, ok, err := s.ClaimKey(ctx, k); err != nil || !ok {
			t.Fatalf("ClaimKey: %v %v", ok, err)
		}
	}
	n, err := s.Prune(ctx, now.Add(-store.DefaultRetention))
	if err != nil || n != 4 {
		t.Fatalf("Prune: %d, %v; want 4", n, err)
	}
	for _, id := range []string{"old1", "old2", "oldReceipt", "oldError"} {
		if _, err := s.Message(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s kept: %v", id, err)
		}
	}
	// A message without proof of delivery is kept until it settles (on
	// restart, its tracker times out and records it).
	for _, id := range []string{"unsettled", "recent", "ackedOld", "liveReceipt", "ackedWindowEnded"} {
		get(t, s, id)
	}
	for _, c := range all(t, s, store.FeedQuery{}) {
		if strings.HasPrefix(c.ID, "old") {
			t.Errorf("feed keeps an event of pruned %s", c.ID)
		}
	}
	// The live key still answers; the expired one was removed.
	if v, ok, _ := s.ClaimKey(ctx, store.Key{Scope: "tok", Name: "k-live", Value: "other", Expires: now.Add(time.Hour)}); ok || v != "v2" {
		t.Errorf("live key: %q %v", v, ok)
	}
	if v, ok, _ := s.ClaimKey(ctx, store.Key{Scope: "tok", Name: "k-old", Value: "new", Expires: now.Add(time.Hour)}); !ok || v != "new" {
		t.Errorf("expired key: %q %v", v, ok)
	}
	if n, err := s.Prune(ctx, now.Add(-store.DefaultRetention)); err != nil || n != 0 {
		t.Errorf("second Prune: %d, %v", n, err)
	}
}

// testPruneKeepsCursors prunes the messages that hold the latest cursors (a
// change, then a creation): LastCursor does not go down, and what is
// committed next gets a cursor above every one a follower may have seen.
func testPruneKeepsCursors(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	ctx := ctxT(t)
	old := time.Now().Add(-8 * 24 * time.Hour)
	insert(t, s, msg(alice, "live"))
	created := msg(alice, "createdSettled")
	created.State, created.Created = tracking.Closed, old
	for i, b := range []*store.Batch{
		{Messages: []store.Message{msg(alice, "changed")},
			Changes: []store.Change{{ID: "changed", State: tracking.Closed, At: old}}},
		{Messages: []store.Message{created}},
	} {
		commit(t, s, b)
		last, err := s.LastCursor(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Prune(ctx, time.Now().Add(-store.DefaultRetention)); err != nil || n != 1 {
			t.Fatalf("%d: Prune %d, %v; want 1", i, n, err)
		}
		if c, err := s.LastCursor(ctx); err != nil || c < last {
			t.Errorf("%d: LastCursor %d after Prune, %v; was %d", i, c, err, last)
		}
		next := insert(t, s, msg(alice, fmt.Sprint("after", i)))
		if next[0].Cursor <= last {
			t.Errorf("%d: cursor %d after Prune, at or below %d", i, next[0].Cursor, last)
		}
	}
	for _, c := range all(t, s, store.FeedQuery{}) {
		if c.ID == "changed" || c.ID == "createdSettled" {
			t.Errorf("feed keeps an event of pruned %s", c.ID)
		}
	}
}

func testLock(t *testing.T, open Open) {
	s, name := fresh(t, open)
	other := opened(t, open, name)
	ctx := ctxT(t)
	l, err := s.Lock(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if l.Owner() != alice {
		t.Errorf("lease owner %v", l.Owner())
	}
	if _, err := other.Lock(ctx, alice); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second holder: %v, want ErrLocked", err)
	}
	if _, err := s.Lock(ctx, alice); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second lock on the same handle: %v, want ErrLocked", err)
	}
	l2, err := other.Lock(ctx, alice2)
	if err != nil {
		t.Fatalf("another resource: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	select {
	case <-l.Lost():
		t.Error("a released lease reports it was lost")
	default:
	}
	l3, err := other.Lock(ctx, alice)
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	// Closing a store releases its leases.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = l2, l3
	third := opened(t, open, name)
	if _, err := third.Lock(ctx, alice); err != nil {
		t.Fatalf("after the holder closed: %v", err)
	}
	if _, err := third.Lock(ctx, alice2); err != nil {
		t.Fatalf("after the holder closed: %v", err)
	}
}

func testKeys(t *testing.T, open Open) {
	s, name := fresh(t, open)
	other := opened(t, open, name)
	ctx := ctxT(t)
	exp := time.Now().Add(24 * time.Hour)
	v, ok, err := s.ClaimKey(ctx, store.Key{Scope: "a", Name: "k", Value: "id-1", Expires: exp})
	if err != nil || !ok || v != "id-1" {
		t.Fatalf("first claim: %q %v %v", v, ok, err)
	}
	v, ok, err = other.ClaimKey(ctx, store.Key{Scope: "a", Name: "k", Value: "id-2", Expires: exp})
	if err != nil || ok || v != "id-1" {
		t.Fatalf("repeat: %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.ClaimKey(ctx, store.Key{Scope: "b", Name: "k", Value: "id-3", Expires: exp}); !ok {
		t.Error("another scope shares the key")
	}
	// Concurrent claims: exactly one wins, everybody gets its value.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, values := 0, map[string]bool{}
	for i := range 10 {
		h := []store.Store{s, other}[i%2]
		wg.Go(func() {
			v, ok, err := h.ClaimKey(ctx, store.Key{Scope: "a", Name: "race", Value: fmt.Sprint("v", i), Expires: exp})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins++
			}
			values[v] = true
		})
	}
	wg.Wait()
	if wins != 1 || len(values) != 1 {
		t.Errorf("concurrent claims: %d wins, values %v", wins, values)
	}
}

// testKeyRead: Key reads a key without writing: an unknown or expired key
// is not found, and stays claimable.
func testKeyRead(t *testing.T, open Open) {
	s, name := fresh(t, open)
	other := opened(t, open, name)
	ctx := ctxT(t)
	if v, ok, err := s.Key(ctx, "a", "k"); err != nil || ok || v != "" {
		t.Fatalf("unknown key: %q %v %v", v, ok, err)
	}
	if _, ok, err := s.ClaimKey(ctx, store.Key{Scope: "a", Name: "k", Value: "id-1", Expires: time.Now().Add(time.Hour)}); err != nil || !ok {
		t.Fatalf("claim after a read: %v %v (the read stored the key?)", ok, err)
	}
	if v, ok, err := other.Key(ctx, "a", "k"); err != nil || !ok || v != "id-1" {
		t.Errorf("claimed key read through another handle: %q %v %v", v, ok, err)
	}
	if _, ok, _ := s.Key(ctx, "b", "k"); ok {
		t.Error("another scope shares the key")
	}
	if _, _, err := s.ClaimKey(ctx, store.Key{Scope: "a", Name: "forever", Value: "v"}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Key(ctx, "a", "forever"); err != nil || !ok || v != "v" {
		t.Errorf("a key without expiry: %q %v %v", v, ok, err)
	}
	// An expired key is not found, and a read leaves it claimable.
	if _, ok, err := s.ClaimKey(ctx, store.Key{Scope: "a", Name: "old", Value: "gone", Expires: time.Now().Add(-time.Second)}); err != nil || !ok {
		t.Fatalf("claim of an expired key: %v %v", ok, err)
	}
	if v, ok, err := s.Key(ctx, "a", "old"); err != nil || ok {
		t.Errorf("expired key read as %q %v %v", v, ok, err)
	}
	if v, ok, err := other.ClaimKey(ctx, store.Key{Scope: "a", Name: "old", Value: "new", Expires: time.Now().Add(time.Hour)}); err != nil || !ok || v != "new" {
		t.Errorf("claim of an expired key after a read: %q %v %v", v, ok, err)
	}
}

func testJobs(t *testing.T, open Open) {
	s, name := fresh(t, open)
	other := opened(t, open, name)
	ctx := ctxT(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, j := range []store.Job{
		{Queue: "send", Name: "late", Due: t0.Add(time.Hour), Data: []byte("3")},
		{Queue: "send", Name: "second", Due: t0.Add(time.Second), Data: []byte("2")},
		{Queue: "send", Name: "first", Due: t0, Data: []byte("1")},
		{Queue: "webhook", Name: "first", Due: t0, Data: []byte("w")},
	} {
		if err := s.PutJob(ctx, j); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(2 * time.Second)
	js, err := other.ClaimJobs(ctx, "send", now, time.Minute, 10)
	if err != nil || len(js) != 2 || js[0].Name != "first" || js[1].Name != "second" {
		t.Fatalf("claim: %+v, %v", js, err)
	}
	if string(js[0].Data) != "1" || js[0].Attempts != 1 || !sameTime(js[0].Due, now.Add(time.Minute)) {
		t.Errorf("claimed job %+v", js[0])
	}
	if js, _ := s.ClaimJobs(ctx, "send", now, time.Minute, 10); len(js) != 0 {
		t.Errorf("claimed again within the lease: %+v", js)
	}
	js, _ = s.ClaimJobs(ctx, "send", now.Add(2*time.Minute), time.Minute, 1)
	if len(js) != 1 || js[0].Name != "first" || js[0].Attempts != 2 {
		t.Errorf("after the lease: %+v", js)
	}
	if ok, err := s.DeleteJob(ctx, "send", "first"); !ok || err != nil {
		t.Errorf("DeleteJob: %v %v", ok, err)
	}
	if ok, err := other.DeleteJob(ctx, "send", "first"); ok || err != nil {
		t.Errorf("DeleteJob again: %v %v", ok, err)
	}
	// Replace: a new due time and data.
	if err := s.PutJob(ctx, store.Job{Queue: "send", Name: "late", Due: t0, Data: []byte("now")}); err != nil {
		t.Fatal(err)
	}
	js, _ = s.ClaimJobs(ctx, "send", now, time.Minute, 10)
	if len(js) != 1 || js[0].Name != "late" || string(js[0].Data) != "now" {
		t.Errorf("replaced job: %+v", js)
	}
	if js, _ := s.ClaimJobs(ctx, "webhook", now, time.Minute, 10); len(js) != 1 || string(js[0].Data) != "w" {
		t.Errorf("webhook queue: %+v", js)
	}
	// AddJob adds a missing job, and leaves one that exists (claimed
	// or not) as it is.
	if ok, err := s.AddJob(ctx, store.Job{Queue: "add", Name: "a", Due: t0, Data: []byte("1")}); !ok || err != nil {
		t.Fatalf("AddJob: %v %v", ok, err)
	}
	if ok, err := other.AddJob(ctx, store.Job{Queue: "add", Name: "a", Due: t0, Data: []byte("2")}); ok || err != nil {
		t.Errorf("AddJob of an existing job: %v %v", ok, err)
	}
	js, _ = other.ClaimJobs(ctx, "add", now, time.Minute, 10)
	if len(js) != 1 || string(js[0].Data) != "1" || js[0].Attempts != 1 {
		t.Fatalf("added job: %+v", js)
	}
	if ok, err := s.AddJob(ctx, store.Job{Queue: "add", Name: "a", Due: t0, Data: []byte("3")}); ok || err != nil {
		t.Errorf("AddJob of a claimed job: %v %v", ok, err)
	}
	if js, _ := s.ClaimJobs(ctx, "add", now, time.Minute, 10); len(js) != 0 {
		t.Errorf("AddJob ended a claim: %+v", js)
	}
	js, _ = s.ClaimJobs(ctx, "add", now.Add(2*time.Minute), time.Minute, 10)
	if len(js) != 1 || string(js[0].Data) != "1" || js[0].Attempts != 2 {
		t.Errorf("AddJob changed a claimed job: %+v", js)
	}
	// Of concurrent adders, one adds.
	var adds atomic.Int32
	var wg sync.WaitGroup
	for w := range 4 {
		h := []store.Store{s, other}[w%2]
		wg.Go(func() {
			ok, err := h.AddJob(ctx, store.Job{Queue: "add", Name: "race", Due: t0, Data: []byte(fmt.Sprint(w))})
			if err != nil {
				t.Error(err)
			}
			if ok {
				adds.Add(1)
			}
		})
	}
	wg.Wait()
	if n := adds.Load(); n != 1 {
		t.Errorf("%d concurrent AddJob calls added the job", n)
	}
	// Concurrent claimers never share a job.
	for i := range 60 {
		if err := s.PutJob(ctx, store.Job{Queue: "bulk", Name: fmt.Sprint("j", i), Due: t0}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	claimed := map[string]int{}
	for w := range 4 {
		h := []store.Store{s, other}[w%2]
		wg.Go(func() {
			for {
				js, err := h.ClaimJobs(ctx, "bulk", now, time.Hour, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(js) == 0 {
					return
				}
				mu.Lock()
				for _, j := range js {
					claimed[j.Name]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != 60 {
		t.Errorf("%d of 60 jobs claimed", len(claimed))
	}
	for n, c := range claimed {
		if c != 1 {
			t.Errorf("job %s claimed %d times", n, c)
		}
	}
}

// testGroupCommit commits from many goroutines at once, some batches
// failing: each batch succeeds or fails on its own.
func testGroupCommit(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	ctx := ctxT(t)
	insert(t, s, msg(alice, "taken"))
	var wg sync.WaitGroup
	errs := make([]error, 60)
	for i := range errs {
		wg.Go(func() {
			b := &store.Batch{Messages: []store.Message{msg(alice, fmt.Sprint("g", i))}}
			if i%6 == 0 {
				b.Messages = append(b.Messages, msg(alice, "taken"))
			}
			b.Changes = []store.Change{{ID: fmt.Sprint("g", i), State: tracking.DeliveredToServer}}
			errs[i] = s.Commit(ctx, b)
		})
	}
	wg.Wait()
	for i, err := range errs {
		_, gerr := s.Message(ctx, fmt.Sprint("g", i))
		if i%6 == 0 {
			if !errors.Is(err, store.ErrExists) || !errors.Is(gerr, store.ErrNotFound) {
				t.Errorf("batch %d: %v; message: %v", i, err, gerr)
			}
			continue
		}
		if err != nil || gerr != nil {
			t.Errorf("batch %d: %v; message: %v", i, err, gerr)
		}
		if r := get(t, s, fmt.Sprint("g", i)); r.State != tracking.DeliveredToServer {
			t.Errorf("batch %d: state %v", i, r.State)
		}
	}
}

func testBadInput(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	ctx := ctxT(t)
	insert(t, s, msg(alice, "ok"))
	last, _ := s.LastCursor(ctx)
	bad := []store.Batch{
		{Messages: []store.Message{msg(alice, "")}},
		{Messages: []store.Message{msg(alice, "new"), msg(store.Instance{}, "x")}},
		{Messages: []store.Message{msg(alice, "nul\x00")}},
		{Messages: []store.Message{msg(alice, "bad\xffutf8")}},
		{Messages: []store.Message{msg(alice, "ctl\x01")}}, // XML does not allow it
		{Messages: []store.Message{func() store.Message { m := msg(alice, "noraw"); m.Raw = nil; return m }()}},
		{Messages: []store.Message{func() store.Message { m := msg(alice, "st"); m.State = 42; return m }()}},
		{Messages: []store.Message{msg(alice, "new2")}, Changes: []store.Change{{ID: "ok", State: 42}}},
		{Changes: []store.Change{{ID: "ok", State: tracking.InTransit}}},
		{Changes: []store.Change{{ID: "ok", State: tracking.Error, Evidence: store.Evidence{Text: "a\x00b"}}}},
		{Written: []store.Written{{ID: strings.Repeat("x", 5000)}}},
		{Sessions: []store.Session{{JID: "a@b/c"}}},
	}
	for i := range bad {
		if err := s.Commit(ctx, &bad[i]); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("bad batch %d: %v, want ErrInvalid", i, err)
		}
	}
	if c, _ := s.LastCursor(ctx); c != last {
		t.Errorf("bad batches wrote to the feed: %d, was %d", c, last)
	}
	for _, id := range []string{"new", "new2"} {
		if _, err := s.Message(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s written by a bad batch", id)
		}
	}
	if r := get(t, s, "ok"); r.State != tracking.InTransit {
		t.Errorf("ok changed: %v", r.State)
	}
	if err := s.Commit(ctx, &store.Batch{}); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	if err := s.Commit(ctx, nil); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("nil batch: %v", err)
	}
	if _, err := s.Message(ctx, ""); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Message(\"\"): %v", err)
	}
	if _, err := s.Changes(ctx, store.FeedQuery{After: -1}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("negative cursor: %v", err)
	}
	if cs, err := s.Changes(ctx, store.FeedQuery{Limit: min(1<<40, math.MaxInt)}); err != nil || len(cs) != 1 {
		t.Errorf("huge limit: %d, %v", len(cs), err)
	}
	if _, err := s.Lock(ctx, store.Instance{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Lock without an account: %v", err)
	}
	if _, err := s.Session(ctx, store.Instance{}); !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session without an account: %v", err)
	}
	if _, _, err := s.ClaimKey(ctx, store.Key{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty key: %v", err)
	}
	if err := s.PutJob(ctx, store.Job{Queue: "q"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("job without a name: %v", err)
	}
	if _, err := s.AddJob(ctx, store.Job{Queue: "q"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("added job without a name: %v", err)
	}
	if _, err := s.ClaimJobs(ctx, "q", time.Now(), 0, 1); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("claim with no lease: %v", err)
	}
	if _, err := s.ClaimJobs(ctx, "q", time.Now(), time.Minute, 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("claim of no jobs: %v", err)
	}
	// Odd but valid text round-trips: quotes, SQL, long strings, unicode.
	odd := msg(alice, `o'd"d;--`)
	odd.To, odd.Channel = "björk@例え.jp", strings.Repeat("c", 1000)
	odd.Raw = []byte{0, 1, 2, 0xff}
	insert(t, s, odd)
	if r := get(t, s, odd.ID); r.To != odd.To || r.Channel != odd.Channel || string(r.Raw) != string(odd.Raw) {
		t.Errorf("odd message read back as %+v", r.Message)
	}
}

func testClosed(t *testing.T, open Open) {
	s, _ := fresh(t, open)
	ctx := ctxT(t)
	insert(t, s, msg(alice, "x"))
	waitErr := make(chan error, 1)
	last, _ := s.LastCursor(ctx)
	go func() { waitErr <- s.Wait(ctx, last) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waitErr; !errors.Is(err, store.ErrClosed) {
		t.Errorf("Wait across Close: %v, want ErrClosed", err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg(alice, "y")}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit after Close: %v", err)
	}
	if _, err := s.Message(ctx, "x"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Message after Close: %v", err)
	}
	if _, err := s.Lock(ctx, alice); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Lock after Close: %v", err)
	}
	if _, _, err := s.Key(ctx, "a", "k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Key after Close: %v", err)
	}
	if _, err := s.AddJob(ctx, store.Job{Queue: "q", Name: "j"}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("AddJob after Close: %v", err)
	}
	if _, _, err := s.ClaimKey(ctx, store.Key{Scope: "a", Name: "k", Value: "v"}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ClaimKey after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// testKeysWithCommits claims keys from many goroutines while others commit
// batches (a gateway's POSTs: each claims its key, then writes its message
// ahead), through two handles: each distinct key is claimed once and every
// claim of it gets the winner's value, concurrent claims of one key (in
// one group or not) let exactly one win, a failing batch among them fails
// alone, and expired keys are claimed again.
func testKeysWithCommits(t *testing.T, open Open) {
	s, name := fresh(t, open)
	other := opened(t, open, name)
	ctx := ctxT(t)
	insert(t, s, msg(alice, "taken"))
	exp := time.Now().Add(24 * time.Hour)
	if _, ok, err := s.ClaimKey(ctx, store.Key{Scope: "g", Name: "stale", Value: "old", Expires: time.Now().Add(-time.Minute)}); err != nil || !ok {
		t.Fatalf("claim of an expired key: %v %v", ok, err)
	}
	const n = 60
	type out struct {
		v   string
		ok  bool
		err error
	}
	own := make([]out, n)    // key "own-i": only goroutine i claims it
	shared := make([]out, n) // key "shared-(i%3)": 20 claims each
	stale := make([]out, n)  // the expired key: one wins
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		h := []store.Store{s, other}[i%2]
		wg.Go(func() {
			k := store.Key{Scope: "g", Name: fmt.Sprint("own-", i), Value: fmt.Sprint("id-", i), Expires: exp}
			v, ok, err := h.ClaimKey(ctx, k)
			own[i] = out{v, ok, err}
			b := &store.Batch{Messages: []store.Message{msg(alice, fmt.Sprint("k", i))}}
			if i%6 == 0 {
				b.Messages = append(b.Messages, msg(alice, "taken"))
			}
			b.Changes = []store.Change{{ID: fmt.Sprint("k", i), State: tracking.DeliveredToServer}}
			errs[i] = h.Commit(ctx, b)
		})
		wg.Go(func() {
			v, ok, err := h.ClaimKey(ctx, store.Key{Scope: "g", Name: fmt.Sprint("shared-", i%3), Value: fmt.Sprint("s-", i), Expires: exp})
			shared[i] = out{v, ok, err}
		})
		wg.Go(func() {
			v, ok, err := h.ClaimKey(ctx, store.Key{Scope: "g", Name: "stale", Value: fmt.Sprint("new-", i), Expires: exp})
			stale[i] = out{v, ok, err}
		})
	}
	wg.Wait()
	for i := range n {
		if o := own[i]; o.err != nil || !o.ok || o.v != fmt.Sprint("id-", i) {
			t.Errorf("claim of own-%d: %q %v %v", i, o.v, o.ok, o.err)
		}
		_, gerr := s.Message(ctx, fmt.Sprint("k", i))
		if i%6 == 0 {
			if errs[i] == nil || gerr == nil {
				t.Errorf("batch %d with a taken id: %v; message: %v", i, errs[i], gerr)
			}
		} else if errs[i] != nil || gerr != nil {
			t.Errorf("batch %d: %v; message: %v", i, errs[i], gerr)
		}
	}
	check := func(what string, outs []out) map[string]int {
		wins := map[string]int{}
		for _, o := range outs {
			if o.err != nil {
				t.Errorf("%s: %v", what, o.err)
			}
			if o.ok {
				wins[o.v]++
			}
		}
		return wins
	}
	if wins := check("stale", stale); len(wins) != 1 {
		t.Errorf("claims of an expired key: wins %v", wins)
	}
	for _, o := range stale {
		if o.v == "old" {
			t.Errorf("a claim of an expired key got its old value")
		}
	}
	wins := check("shared", shared)
	winner := map[int]string{}
	for i, o := range shared {
		if prev, ok := winner[i%3]; ok && prev != o.v {
			t.Errorf("claims of shared-%d got %q and %q", i%3, prev, o.v)
		}
		winner[i%3] = o.v
	}
	if len(wins) != 3 {
		t.Errorf("claims of three shared keys: wins %v", wins)
	}
	for v, k := range wins {
		if k != 1 {
			t.Errorf("value %q won %d claims", v, k)
		}
	}
	// A repeat of each key gets the first claim's value, through either
	// handle, and reads agree.
	for i := range n {
		h := []store.Store{other, s}[i%2]
		v, ok, err := h.ClaimKey(ctx, store.Key{Scope: "g", Name: fmt.Sprint("own-", i), Value: "again", Expires: exp})
		if err != nil || ok || v != fmt.Sprint("id-", i) {
			t.Errorf("repeat of own-%d: %q %v %v", i, v, ok, err)
		}
		if v, ok, err := h.Key(ctx, "g", fmt.Sprint("shared-", i%3)); err != nil || !ok || v != winner[i%3] {
			t.Errorf("read of shared-%d: %q %v %v, want %q", i%3, v, ok, err, winner[i%3])
		}
	}
}

package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// TestClaimInGroup: claims queue with batches, reach the commit function
// in the same group, in order, and return what it answered; bad keys are
// refused before they are queued.
func TestClaimInGroup(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	defer stop()
	q := New(life)
	groups := make(chan []string, 8)
	entered, hold := make(chan struct{}), make(chan struct{})
	first := true
	commit := func(group []*Request) {
		if first { // hold the first group until the others are queued
			first = false
			close(entered)
			<-hold
		}
		var items []string
		for _, r := range group {
			if r.Key != nil {
				items = append(items, "key "+r.Key.Name)
				r.Value, r.Claimed = r.Key.Value+"!", r.Key.Name == "k1"
				r.Answer(nil)
				continue
			}
			items = append(items, "batch "+r.Batch.Changes[0].ID)
			r.Answer(nil)
		}
		groups <- items
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { q.Run(commit) })
	defer stop()
	ctx := context.Background()
	var cw sync.WaitGroup
	cw.Go(func() { q.Commit(ctx, batch("b0")) })
	<-entered
	// queued waits until n requests are pending: the held one and those
	// queued after it, one at a time so that their order is known. Each
	// must be in the queue, not only counted (pending counts a request
	// before it enters reqs): the next one could enter first, or the
	// committer, released, could take the group without the last. A
	// request lost (or one too many) fails the test instead of spinning
	// for ever; the bound only ends a hang, it times nothing.
	queued := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; runtime.Gosched() {
			switch p := q.pending.Load(); {
			case p == n && len(q.reqs) == int(n)-1: // the held one is out
				return
			case p > n:
				t.Fatalf("%d requests pending, want %d", p, n)
			case time.Now().After(deadline):
				t.Fatalf("%d requests pending after a minute, want %d", p, n)
			}
		}
	}
	type claimOut struct {
		v  string
		ok bool
	}
	outs := make([]claimOut, 2)
	for i, name := range []string{"k1", "k2"} {
		queued(int32(1 + 2*i))
		cw.Go(func() {
			v, ok, err := q.Claim(ctx, store.Key{Scope: "s", Name: name, Value: "v" + name})
			if err != nil {
				t.Error(err)
			}
			outs[i] = claimOut{v, ok}
		})
		queued(int32(2 + 2*i))
		cw.Go(func() { q.Commit(ctx, batch("b"+name)) })
	}
	queued(5)
	close(hold)
	cw.Wait()
	<-groups
	got := <-groups
	want := []string{"key k1", "batch bk1", "key k2", "batch bk2"}
	if len(got) != len(want) {
		t.Fatalf("second group %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("second group %v, want %v", got, want)
		}
	}
	if outs[0] != (claimOut{"vk1!", true}) || outs[1] != (claimOut{"vk2!", false}) {
		t.Errorf("claims returned %v", outs)
	}
	if _, _, err := q.Claim(ctx, store.Key{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty key: %v, want ErrInvalid", err)
	}
	stop()
	if _, _, err := q.Claim(ctx, store.Key{Scope: "s", Name: "late"}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("claim after the life ended: %v, want ErrClosed", err)
	}
}

// TestEndedContextRefused: a claim whose ctx has already ended is refused
// with ctx's error and never reaches the commit function, though the
// committer is ready to take it (the queue's select would otherwise pick
// the queued case about half the time).
func TestEndedContextRefused(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	q := New(life)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		q.Run(func(group []*Request) {
			for _, r := range group {
				t.Errorf("request reached the commit function: %+v", r.Key)
				r.Answer(nil)
			}
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 2000 {
		if _, ok, err := q.Claim(ctx, store.Key{Scope: "s", Name: fmt.Sprint("k", i), Value: "v"}); !errors.Is(err, context.Canceled) || ok {
			t.Fatalf("claim %d with an ended ctx: claimed %v, err %v", i, ok, err)
		}
	}
}

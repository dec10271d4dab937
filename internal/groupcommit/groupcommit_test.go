package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func batch(id string) *store.Batch {
	return &store.Batch{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer}}}
}

// TestInlineLone: with Inline, a Commit that finds the queue idle commits
// its batch itself: it is answered although no committer goroutine runs.
func TestInlineLone(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	defer stop()
	q := New(life)
	mine := errors.New("the commit function's answer")
	var got []string
	q.Inline(func(group []*Request) {
		for _, r := range group {
			got = append(got, r.Batch.Changes[0].ID)
			r.Answer(mine)
		}
	})
	// Bounded only against a hang (no committer runs): without Inline the
	// Commit ends with the context's error.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range []string{"a", "b"} {
		if err := q.Commit(ctx, batch(id)); !errors.Is(err, mine) {
			t.Fatalf("Commit %s: %v, want the commit function's answer", id, err)
		}
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("committed %v, want [a b]", got)
	}
	cancel()
	if err := q.Commit(ctx, batch("c")); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with an ended context: %v, want context.Canceled", err)
	}
	if len(got) != 2 {
		t.Errorf("a batch whose context had ended was committed: %v", got)
	}
}

// TestInlineExclusive: a Commit that finds the commit function running (a
// caller's own commit) queues its batch; the committer goroutine commits it
// once that commit returned, never at the same time.
func TestInlineExclusive(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	defer stop()
	q := New(life)
	var running, overlaps atomic.Int32
	entered := make(chan string, 2)
	release := make(chan struct{})
	commit := func(group []*Request) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		for _, r := range group {
			entered <- r.Batch.Changes[0].ID
			if r.Batch.Changes[0].ID == "first" {
				<-release
			}
		}
		running.Add(-1)
		for _, r := range group {
			r.Answer(nil)
		}
	}
	q.Inline(commit)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { q.Run(commit) })
	defer stop()
	errs := make(chan error, 2)
	go func() { errs <- q.Commit(context.Background(), batch("first")) }()
	if id := <-entered; id != "first" {
		t.Fatalf("committed %s first", id)
	}
	go func() { errs <- q.Commit(context.Background(), batch("second")) }()
	// "second" cannot enter the commit function while "first" holds it:
	// release "first" only once "second" waits (queued or held by Run).
	for q.pending.Load() == 0 {
		select {
		case id := <-entered:
			t.Fatalf("%s entered the commit function while first was in it", id)
		default:
		}
		runtime.Gosched()
	}
	close(release)
	if id := <-entered; id != "second" {
		t.Fatalf("then committed %s", id)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("the commit function ran %d times while it was running", n)
	}
}

// TestStopWaitsForInline: Stop returns only once a Commit committing its
// batch itself is done, and Commits after the store's life ended are
// refused with ErrClosed, committing nothing.
func TestStopWaitsForInline(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	q := New(life)
	entered := make(chan struct{})
	release := make(chan struct{})
	var commits atomic.Int32
	q.Inline(func(group []*Request) {
		if commits.Add(1) == 1 {
			close(entered)
			<-release
		}
		for _, r := range group {
			r.Answer(nil)
		}
	})
	committed := make(chan error, 1)
	go func() { committed <- q.Commit(context.Background(), batch("a")) }()
	<-entered
	stop()
	stopped := make(chan struct{})
	go func() { q.Stop(); close(stopped) }()
	for range 100 { // give Stop the chance to return early
		runtime.Gosched()
	}
	select {
	case <-stopped:
		t.Fatal("Stop returned while a Commit was committing")
	case err := <-committed:
		t.Fatalf("the Commit returned (%v) before its commit did", err)
	default:
	}
	close(release)
	<-stopped
	if err := <-committed; err != nil {
		t.Errorf("the Commit that was committing: %v", err)
	}
	if err := q.Commit(context.Background(), batch("b")); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit after the end: %v, want ErrClosed", err)
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("%d commits, want 1", n)
	}
}

// TestInlinePanicUnlocks: a commit function that panics on a caller's
// goroutine, whose panic the caller recovers (as net/http does for a
// handler), leaves the queue usable: the next Commit is committed, and Stop
// returns.
func TestInlinePanicUnlocks(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	defer stop()
	q := New(life)
	first := true
	commit := func(group []*Request) {
		if first {
			first = false
			panic("a bug in the commit function")
		}
		for _, r := range group {
			r.Answer(nil)
		}
	}
	q.Inline(commit)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { q.Run(commit) })
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the commit function's panic did not reach the caller")
			}
		}()
		q.Commit(context.Background(), batch("a"))
	}()
	// Bounded only against a hang: without the unlock the Commit waits
	// for ever behind the queue's lock, and ends with the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := q.Commit(ctx, batch("b")); err != nil {
		t.Errorf("the Commit after the panic: %v", err)
	}
	stop()
	q.Stop()
}

// TestNoOvertaking: a Commit never commits its batch on its own goroutine
// while a batch queued before it waits for the committer goroutine.
func TestNoOvertaking(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	defer stop()
	q := New(life)
	var order []string
	var mu sync.Mutex
	entered := make(chan struct{})
	release := make(chan struct{})
	commit := func(group []*Request) {
		for _, r := range group {
			id := r.Batch.Changes[0].ID
			mu.Lock()
			order = append(order, id)
			mu.Unlock()
			if id == "first" {
				close(entered)
				<-release
			}
			r.Answer(nil)
		}
	}
	q.Inline(commit)
	errs := make(chan error, 3)
	go func() { errs <- q.Commit(context.Background(), batch("first")) }() // inline, held
	<-entered
	go func() { errs <- q.Commit(context.Background(), batch("queued")) }()
	// Until "queued" is in the queue, not only counted (pending counts a
	// request before it enters reqs): a Commit between the two would
	// queue ahead of it, an order no caller could see.
	for deadline := time.Now().Add(time.Minute); len(q.reqs) == 0; runtime.Gosched() {
		if time.Now().After(deadline) { // only a hang reaches it
			t.Fatal(`"queued" never entered the queue`)
		}
	}
	close(release)
	<-errs // "first"
	// No committer goroutine runs yet: a Commit now must queue behind
	// "queued" instead of committing before it.
	third := make(chan error, 1)
	go func() { third <- q.Commit(context.Background(), batch("third")) }()
	for q.pending.Load() < 2 {
		select {
		case err := <-third:
			t.Fatalf("the third Commit returned (%v) while a batch queued before it waited", err)
		default:
		}
		runtime.Gosched()
	}
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Go(func() { q.Run(commit) })
	if err := <-errs; err != nil {
		t.Error(err)
	}
	if err := <-third; err != nil {
		t.Error(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 3 || order[0] != "first" || order[1] != "queued" || order[2] != "third" {
		t.Errorf("committed %v, want [first queued third]", order)
	}
}

// runSleeping runs q's committer with a commit function that takes d (a
// transaction) and answers every request; it returns the size of each
// group it was handed, safe to read once the callers' Commits returned.
func runSleeping(q *Queue, d time.Duration) *[]int { return runAnswering(q, d, false) }

// runAnswering is runSleeping; with settle, the commit function returns
// only once the callers it answered are blocked again (in a synctest
// bubble: they queued their next batches, as on a machine with idle
// cores).
func runAnswering(q *Queue, d time.Duration, settle bool) *[]int {
	var sizes []int
	go q.Run(func(group []*Request) {
		sizes = append(sizes, len(group))
		time.Sleep(d)
		for _, r := range group {
			r.Answer(nil)
		}
		if settle {
			synctest.Wait()
		}
	})
	return &sizes
}

// TestRefill: with Refill, callers committing in a loop share one group
// per round once the first two groups are past. Without it they split
// into the callers queued while a commit ran and those it answered.
// commitRounds has callers goroutines commit rounds batches each, one
// after the other, and returns when all were answered.
func commitRounds(t *testing.T, q *Queue, callers, rounds int) {
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range rounds {
				if err := q.Commit(context.Background(), batch(fmt.Sprint(c, "-", i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		life, stop := context.WithCancel(context.Background())
		defer stop()
		q := New(life)
		q.Refill()
		sizes := runSleeping(q, time.Millisecond)
		const callers, rounds = 8, 20
		commitRounds(t, q, callers, rounds)
		got := *sizes
		if len(got) < 3 {
			t.Fatalf("%d groups: %v", len(got), got)
		}
		if len(got) > rounds+2 {
			t.Errorf("%d groups for %d rounds of %d callers: %v", len(got), rounds, callers, got)
		}
		for i, n := range got[2 : len(got)-1] {
			if n != callers {
				t.Errorf("group %d holds %d requests, want all %d callers: %v", i+2, n, callers, got)
				break
			}
		}
	})
}

// TestRefillBounded: after a burst, a lone caller's group waits at most
// half the previous commit's duration, capped at refillMax, and only
// once; a sequential caller never waits.
func TestRefillBounded(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond} {
		synctest.Test(t, func(t *testing.T) {
			life, stop := context.WithCancel(context.Background())
			defer stop()
			q := New(life)
			q.Refill()
			runSleeping(q, d)
			took := func(id string) time.Duration {
				began := time.Now()
				if err := q.Commit(context.Background(), batch(id)); err != nil {
					t.Fatal(err)
				}
				return time.Since(began)
			}
			for i := range 3 { // sequential
				if got := took(fmt.Sprint("s", i)); got != d {
					t.Errorf("commit %d of a sequential caller took %v, want %v", i, got, d)
				}
			}
			burst(t, q)
			if got, want := took("lone"), d+min(d/2, refillMax); got != want {
				t.Errorf("a lone commit after a burst took %v, want %v", got, want)
			}
			if got := took("next"); got != d {
				t.Errorf("the next lone commit took %v, want %v", got, d)
			}
		})
	}
}

// burst commits a batch and, while it is committed, 8 more, which share
// the next group: with Refill the committer then expects 8 (in a synctest
// bubble).
func burst(t *testing.T, q *Queue) {
	var wg sync.WaitGroup
	commit := func(id string) {
		if err := q.Commit(context.Background(), batch(id)); err != nil {
			t.Error(err)
		}
	}
	wg.Go(func() { commit("first") })
	synctest.Wait()
	for c := range 8 {
		wg.Go(func() { commit(fmt.Sprint("b", c)) })
	}
	wg.Wait()
}

// TestRefillOpenLoop: callers that commit once each (one every 100 µs on
// average, evenly or at random, while a commit takes 1 ms) cannot fill
// Refill's waits, which pause: their mean Commit latency stays within 6%
// of what it is without Refill (about 25% more when every round waited,
// and more than 6% with pauses of at most 2 rounds).
func TestRefillOpenLoop(t *testing.T) {
	mean := func(refill bool, gap func() time.Duration) (m time.Duration) {
		synctest.Test(t, func(t *testing.T) {
			life, stop := context.WithCancel(context.Background())
			defer stop()
			q := New(life)
			if refill {
				q.Refill()
			}
			runSleeping(q, time.Millisecond)
			const n = 2000
			var total atomic.Int64
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					began := time.Now()
					if err := q.Commit(context.Background(), batch(fmt.Sprint(i))); err != nil {
						t.Error(err)
					}
					total.Add(int64(time.Since(began)))
				})
				time.Sleep(gap())
			}
			wg.Wait()
			m = time.Duration(total.Load() / n)
		})
		return m
	}
	even := func() func() time.Duration {
		return func() time.Duration { return 100 * time.Microsecond }
	}
	random := func(seed uint64) func() func() time.Duration {
		return func() func() time.Duration {
			rng := rand.New(rand.NewPCG(seed, 1))
			return func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(100*time.Microsecond)) }
		}
	}
	for name, gaps := range map[string]func() func() time.Duration{
		"even": even, "random1": random(1), "random2": random(2), "random3": random(3),
	} {
		without, with := mean(false, gaps()), mean(true, gaps())
		if with > without*106/100 {
			t.Errorf("%s arrivals: mean Commit latency %v with Refill, %v without: more than 6%% more", name, with, without)
		}
	}
}

// TestRefillClose: the queue's life ending while the committer waits for
// callers ends the wait, and what it gathered is not committed: those
// Commit calls return ErrClosed.
func TestRefillClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		life, stop := context.WithCancel(context.Background())
		defer stop()
		q := New(life)
		q.Refill()
		var mu sync.Mutex
		var committed []string
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			q.Run(func(group []*Request) {
				mu.Lock()
				for _, r := range group {
					committed = append(committed, r.Batch.Changes[0].ID)
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				for _, r := range group {
					r.Answer(nil)
				}
			})
		}()
		burst(t, q)
		errc := make(chan error, 1)
		go func() { errc <- q.Commit(context.Background(), batch("lone")) }()
		// A request no caller can cancel, so that the committer alone
		// decides what becomes of it.
		q.pending.Add(1)
		q.reqs <- NewRequest(batch("held"))
		synctest.Wait() // the committer waits for 6 more
		stop()
		if err := <-errc; !errors.Is(err, store.ErrClosed) {
			t.Errorf("Commit after the life ended during the wait: %v, want ErrClosed", err)
		}
		<-ran // Run returns on Close
		mu.Lock()
		defer mu.Unlock()
		for _, id := range []string{"lone", "held"} {
			if slices.Contains(committed, id) {
				t.Errorf("%s, gathered during the wait, was committed after the life ended", id)
			}
		}
	})
}

// TestRefillCountsOnce: the callers a commit answered and that queued
// their next batches before the committer looked are not counted twice
// (once as answered, once as queued): the committer expects 8 of 8
// callers, not 16, and never waits for callers that do not exist.
func TestRefillCountsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		life, stop := context.WithCancel(context.Background())
		defer stop()
		q := New(life)
		q.Refill()
		runAnswering(q, time.Millisecond, true)
		const callers, rounds = 8, 100
		began := time.Now()
		commitRounds(t, q, callers, rounds)
		if took, most := time.Since(began), (rounds+3)*time.Millisecond; took > most {
			t.Errorf("%d rounds of 1 ms took %v, more than %v: the committer waited", rounds, took, most)
		}
	})
}

package trackcore

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestTimersAgainstModel drives a registry with a random mix of own and
// foreign ids, the registry's window, windows of their own and none,
// evidence that settles trackers in any order, and time passing, and
// checks after every step that each pending tracker is found by its id,
// no settled one is, and each window ends exactly when it should: the
// registry's hook sees TIMED_OUT at the deadline's very instant.
func TestTimersAgainstModel(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				timersModel(t, seed, model{window: 2 * time.Second, ownMax: 4000, steps: 3000, register: 10, settle: 6, sleepMax: 300})
			})
		})
	}
}

// TestWindowsExactAfterCompaction is the model test in the regime where the
// registration marks get compacted (review rv-mem2 S1): a short window,
// about one registration per millisecond, and evidence only for the most
// recent messages, so older ones stay pending among many settled ones and
// marks outnumber twice the pending trackers again and again. A mark
// chosen wrongly by compactMarks ends a window early or late.
func TestWindowsExactAfterCompaction(t *testing.T) {
	seeds := uint64(12)
	if raceEnabled {
		seeds = 2 // about 4 s each under the race detector
	}
	for seed := range seeds {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				timersModel(t, seed, model{window: 500 * time.Millisecond, ownMax: 1000, steps: 20_000, register: 8, settle: 7, sleepMax: 4, recent: 8})
			})
		})
	}
}

// model sets the mix of a timersModel run: out of 20 steps, register
// register a message, settle settle one (if recent > 0, three times in four
// one of the recent most recent pending ones, so that older ones stay
// pending among settled ones) and the rest sleep less than sleepMax
// milliseconds. One message in 5 has a window of its own of up to ownMax
// milliseconds, one in 5 none.
type model struct {
	window                   time.Duration
	ownMax, steps, sleepMax  int
	register, settle, recent int
}

func timersModel(t *testing.T, seed uint64, m model) {
	rng := rand.New(rand.NewPCG(seed, 17))
	var mu sync.Mutex
	timedOut := map[*MessageTracker]time.Time{}
	r := NewRegistry(Config[Response]{Window: m.window, MaxPending: -1, OnStateChange: func(tr *MessageTracker, _, to State, _ *Response) {
		if to == TimedOut {
			mu.Lock()
			timedOut[tr] = time.Now() // under synctest: the instant the timer fired
			mu.Unlock()
		}
	}})
	defer r.Close()
	type entry struct {
		t        *MessageTracker
		id       string
		deadline time.Time // zero: no window
		settled  bool
	}
	var all []*entry
	start := time.Now()
	foreign := 0
	for step := range m.steps {
		switch k := rng.IntN(20); {
		case k < m.register: // a new message
			id := ""
			if rng.IntN(4) == 0 {
				foreign++
				id = "f" + strconv.Itoa(foreign)
			}
			var o TrackOptions
			d := m.window
			switch rng.IntN(5) {
			case 0:
				o.Window, d = -1, 0
			case 1:
				d = time.Duration(1+rng.IntN(m.ownMax)) * time.Millisecond
				o.Window = d
			}
			tr := track(t, r, bob, id, o)
			e := &entry{t: tr, id: tr.ID()}
			if d > 0 {
				e.deadline = time.Now().Add(d)
			}
			all = append(all, e)
		case k < m.register+m.settle: // evidence that settles a pending message
			if n := len(all); n > 0 {
				e := all[rng.IntN(n)]
				if m.recent > 0 && rng.IntN(4) > 0 {
					e = all[n-1-rng.IntN(min(n, m.recent))]
				}
				r.Lost(bob, e.id)
				e.settled = true
			}
		default: // time passes
			time.Sleep(time.Duration(rng.IntN(m.sleepMax)) * time.Millisecond)
			synctest.Wait() // windows end only as time passes: their hooks ran
		}
		now := time.Now()
		kept := all[:0]
		for _, e := range all {
			due := !e.deadline.IsZero() && !now.Before(e.deadline)
			switch {
			case e.settled && !e.t.Settled():
				t.Fatalf("step %d: %s lost but pending", step, e.id)
			case !e.settled && due && e.t.State() != TimedOut:
				t.Fatalf("step %d (%v): %s due at %v, still %v", step, now.Sub(start), e.id, e.deadline.Sub(start), e.t.State())
			case !e.settled && !due && e.t.Settled():
				t.Fatalf("step %d (%v): %s settled %v before its deadline %v", step, now.Sub(start), e.id, e.t.State(), e.deadline.Sub(start))
			}
			if !e.settled && e.t.State() == TimedOut {
				mu.Lock()
				at := timedOut[e.t]
				mu.Unlock()
				if !at.Equal(e.deadline) {
					t.Fatalf("step %d: %s timed out at %v, deadline %v", step, e.id, at.Sub(start), e.deadline.Sub(start))
				}
			}
			if e.t.Settled() {
				if r.Find(e.id) != nil {
					t.Fatalf("step %d: settled %s still found", step, e.id)
				}
				continue
			}
			if r.Find(e.id) != e.t {
				t.Fatalf("step %d: pending %s not found", step, e.id)
			}
			kept = append(kept, e)
		}
		all = kept
	}
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	if held := len(r.byNum.ts); held > 2*r.pending+17 {
		t.Fatalf("byNum holds %d for %d pending", held, r.pending)
	}
}

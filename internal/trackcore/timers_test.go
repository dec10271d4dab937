package trackcore

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// TestTimersAgainstModel drives a registry with a random mix of own and
// foreign ids, the registry's window, windows of their own and none,
// evidence that settles trackers in any order, and time passing, and
// checks after every step that each pending tracker is found by its id,
// no settled one is, and each window ends exactly when it should: not a
// millisecond early, and by the time the clock reaches it.
func TestTimersAgainstModel(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { timersModel(t, seed) })
		})
	}
}

func timersModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 17))
	const window = 2 * time.Second
	r := NewRegistry(Config[Response]{Window: window, MaxPending: -1})
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
	for step := range 3000 {
		switch k := rng.IntN(10); {
		case k < 5: // a new message
			id := ""
			if rng.IntN(4) == 0 {
				foreign++
				id = "f" + strconv.Itoa(foreign)
			}
			var o TrackOptions
			d := window
			switch rng.IntN(5) {
			case 0:
				o.Window, d = -1, 0
			case 1:
				d = time.Duration(1+rng.IntN(4000)) * time.Millisecond
				o.Window = d
			}
			tr := track(t, r, bob, id, o)
			e := &entry{t: tr, id: tr.ID()}
			if d > 0 {
				e.deadline = time.Now().Add(d)
			}
			all = append(all, e)
		case k < 8: // evidence that settles a random pending message
			if len(all) > 0 {
				e := all[rng.IntN(len(all))]
				r.Lost(bob, e.id)
				e.settled = true
			}
		default: // time passes
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			synctest.Wait()
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

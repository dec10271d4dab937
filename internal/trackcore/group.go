package trackcore

import (
	"sync"
	"sync/atomic"
	"time"
)

// linger is how long a registry's callback goroutine waits for more
// callbacks before it ends: long enough that a stream of evidence (a
// receipt every few milliseconds) is served by one goroutine instead of
// one per callback, short enough that an idle registry has none.
const linger = 500 * time.Millisecond

// group is what trackers share: one lock and one ordered callback queue. A
// Registry is one group; a standalone tracker (NewStandalone) has its own.
//
// Callbacks run on one goroutine per group at a time, the dispatcher, so
// they run in transition order. A standalone tracker's dispatcher is
// started when a change is queued and ends as soon as the queue is empty. A
// registry's dispatcher waits for more, parked on wake, until a whole linger
// period passed without callbacks (it ends between linger and twice linger
// after the last one) or the registry is closed: under load, a change then
// costs a wake-up instead of a new goroutine. The linger timer is set once
// per period, not once per change. Either way it is at most one goroutine
// per group, never one per tracker.
//
// The queue is bounded through admission, not by dropping or waiting on
// the evidence side: held counts the changes queued or in the batch being
// run, and a registry admits a new tracker (Track) only while held is
// below limit. Evidence always applies at once, so the goroutine that
// reads the stream never waits for the application. Since a tracker makes
// at most maxChanges changes in its life, held never exceeds
// limit - 1 + maxChanges*MaxPending (see Registry).
//
// Callbacks are not protected against panics: a panic in a callback
// crashes the program with the callback's own stack, as a panic in any
// goroutine does. The library never swallows one.
type group[R any] struct {
	mu      sync.Mutex
	queue   changes[R] // state changes whose callbacks have not run, oldest first
	held    int        // changes in queue or in the batch being run
	spare   changes[R] // the previous queue's list of blocks, reused
	free    blocks[R]  // empty blocks, reused (see changes.recycle)
	running bool       // the dispatcher exists
	parked  bool       // the dispatcher waits on wake; whoever clears it sends one wake-up
	closed  bool       // the registry is closed: the dispatcher ends once the queue is empty
	worked  bool       // the dispatcher took callbacks since the last linger tick
	expire  bool       // a linger period passed without callbacks: the dispatcher ends
	armed   bool       // timer is pending, or a tick is on its way
	wake    chan struct{}
	timer   *time.Timer // linger ticks (time.AfterFunc); nil until needed
	hook    Hook[R]
	made    Hook[R]      // Config.OnMade: called under mu as each change is made
	reg     *Registry[R] // nil for standalone trackers

	// holding is set while the goroutine that reads the stream works through
	// what it has read (Registry.Hold): changes are queued without waking
	// the parked dispatcher, and Registry.Release, called before that
	// goroutine waits for more input, wakes it once for all of them. A
	// burst of evidence then costs one wake-up instead of one per change.
	// A dispatcher that is not running is started as usual, and the
	// linger tick wakes a parked one with changes queued, so a Release that
	// comes late (the reading goroutine blocked elsewhere) delays callbacks
	// by at most about two linger periods.
	holding atomic.Bool
	owed    bool // changes were queued while held: Release hands them over
}

// change is one state change waiting for its callbacks.
type change[R any] struct {
	t        *Tracker[R]
	from, to State
	resp     *R
	cbs      *callbacks[R] // the tracker's callbacks when the change was queued
}

// Hook is a registry-wide state-change callback.
type Hook[R any] func(t *Tracker[R], from, to State, resp *R)

// unlock finishes a locked operation: the registry sweeps what settled, the
// lock is released, and queued callbacks are handed to the dispatcher,
// which is woken or started. Callbacks therefore never run on the goroutine
// that reported the evidence, nor under the lock.
func (g *group[R]) unlock() {
	if g.reg != nil {
		g.reg.tidy()
	}
	var start, wake bool
	if len(g.queue) > 0 || g.closed {
		switch {
		case g.parked && !g.closed && g.holding.Load():
			g.owed = true // Release wakes it; the linger tick if none comes
		case g.parked:
			g.parked, wake = false, true
		case !g.running && len(g.queue) > 0:
			g.running, g.expire, start = true, false, true
		}
	}
	g.mu.Unlock()
	if wake {
		g.wakeUp()
	}
	if start {
		go g.runCallbacks()
	}
}

// release ends a hold (see holding) and hands over the changes queued
// during it.
func (g *group[R]) release() {
	if !g.holding.Swap(false) {
		return
	}
	g.mu.Lock()
	if !g.owed {
		g.mu.Unlock()
		return
	}
	g.owed = false
	g.unlock()
}

// wakeUp wakes the parked dispatcher. It never blocks: parked is set only
// while wake is empty, and only the one who cleared it calls wakeUp.
func (g *group[R]) wakeUp() { g.wake <- struct{}{} }

// runCallbacks is the dispatcher: it runs queued callbacks until the queue
// is empty and, for a registry, waits for more.
func (g *group[R]) runCallbacks() {
	g.mu.Lock()
	for {
		if batch := g.queue; len(batch) > 0 {
			g.queue = g.spare[:0]
			g.worked = true
			g.mu.Unlock()
			n := batch.run(g.call)
			g.mu.Lock()
			g.spare = batch.recycle(&g.free)
			g.held -= n
			if g.reg != nil {
				g.reg.wakeTrack()
			}
			continue
		}
		if g.reg == nil || g.closed || g.expire {
			if g.armed && g.timer.Stop() {
				g.armed = false
			}
			g.running, g.expire = false, false
			g.mu.Unlock()
			return
		}
		if !g.armed {
			if g.timer == nil {
				g.wake = make(chan struct{}, 1)
				g.timer = time.AfterFunc(linger, g.tick)
			} else {
				g.timer.Reset(linger)
			}
			g.armed, g.worked = true, false
		}
		g.parked = true
		g.mu.Unlock()
		<-g.wake
		g.mu.Lock()
	}
}

// tick runs once per linger period while a registry's dispatcher exists,
// on the timer's goroutine. After a period without callbacks it ends the
// dispatcher. A late tick (the timer fired as the dispatcher ended, and a
// new one armed it again) can at worst end a dispatcher early: the next
// change starts another.
func (g *group[R]) tick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed = false
	switch {
	case !g.running:
	case g.worked:
		g.worked, g.armed = false, true
		g.timer.Reset(linger)
	default:
		g.expire = true
		if g.parked {
			g.parked = false
			g.wakeUp()
		}
	}
}

func (g *group[R]) call(c *change[R]) {
	if g.hook != nil {
		g.hook(c.t, c.from, c.to, c.resp)
	}
	c.cbs.run(c.from, c.to, c.resp)
}

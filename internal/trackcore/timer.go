package trackcore

import "time"

// maxWindow is the longest tracking window. Deadlines are kept as wrapping
// 32-bit millisecond counts, which compare correctly while all of them lie
// within 2^31 ms of each other.
const maxWindow = 24 * 24 * time.Hour

// timers ends the windows of a registry's trackers, with one time.Timer
// for all of them; no tracker owns a timer or holds its deadline.
//
// A tracker with the registry's window (the usual case) ends it in
// registration order: the registry clock never goes back, so its deadline
// is its registration time plus the window, and those come in the order of
// Tracker.num. They are found in Registry.byNum, from pos on, and their
// registration times in marks: one entry per millisecond in which such
// trackers were registered, not one per tracker. A tracker with a window
// of its own (TrackOptions.Window, or a reloaded message's rest of its
// window) is in heap, with its deadline.
type timers[R any] struct {
	def   uint32 // the registry's window in ms; 0: none
	pos   int    // index in byNum: pending trackers with the registry's window are all at or after it
	marks []mark // registration times by number, for trackers with the registry's window
	mpeak int    // longest marks since its array was last copied
	heap  []timed[R]
	hdead int // settled trackers in heap, left there until popped or the heap is rebuilt
	live  int // pending trackers with a window
}

// mark says that trackers from number num on were registered at time at,
// in ms since the registry epoch (wrapping), until the next mark.
type mark struct {
	num uint64
	at  uint32
}

// timed is a tracker with a window of its own, and its deadline.
type timed[R any] struct {
	t  *Tracker[R]
	at uint32
}

// now returns the registry clock: milliseconds since the epoch, wrapping.
func (r *Registry[R]) now() uint32 { return uint32(time.Since(r.epoch).Milliseconds()) }

// add gives the new tracker t a window of ms milliseconds from now and
// returns the flags of its word that say where it is.
func (tm *timers[R]) add(t *Tracker[R], ms, now uint32) uint32 {
	tm.live++
	if tm.def != 0 && ms == tm.def {
		if n := len(tm.marks); n == 0 || tm.marks[n-1].at != now {
			tm.marks = append(tm.marks, mark{num: t.num, at: now})
			tm.mpeak = max(tm.mpeak, len(tm.marks))
		}
		return hasDeadline
	}
	tm.heap = append(tm.heap, timed[R]{t: t, at: now + ms})
	tm.up(len(tm.heap) - 1)
	return hasDeadline | ownWindow
}

// gone records that a tracker with a window settled.
func (tm *timers[R]) gone(own bool) {
	tm.live--
	if own {
		tm.hdead++
	}
}

// trimMarks forgets the marks that no tracker from number bound on needs.
func (tm *timers[R]) trimMarks(bound uint64) {
	i := 0
	for i+1 < len(tm.marks) && tm.marks[i+1].num <= bound {
		i++
	}
	tm.marks = tm.marks[i:]
	if tm.mpeak > 1024 && len(tm.marks) < tm.mpeak/4 {
		tm.marks = append([]mark(nil), tm.marks...)
		tm.mpeak = len(tm.marks)
	}
}

// next returns the first pending tracker with the registry's window and its
// deadline, moving pos past the trackers before it.
func (r *Registry[R]) next() (*Tracker[R], uint32, bool) {
	tm := &r.timers
	ts := r.byNum.ts
	for ; tm.pos < len(ts); tm.pos++ {
		t := ts[tm.pos]
		if t.word.Load()&(inRegistry|hasDeadline|ownWindow) == inRegistry|hasDeadline {
			tm.trimMarks(t.num)
			return t, tm.marks[0].at + tm.def, true
		}
	}
	return nil, 0, false
}

// top returns the heap's pending tracker with the earliest deadline,
// popping the settled ones above it.
func (tm *timers[R]) top() (timed[R], bool) {
	for len(tm.heap) > 0 {
		if e := tm.heap[0]; !e.t.Settled() {
			return e, true
		}
		tm.pop()
		tm.hdead--
	}
	return timed[R]{}, false
}

// tidy rebuilds the heap without its settled trackers once they are more
// than half of it, so memory follows the pending ones at amortized O(1) per
// settled tracker. The caller holds the lock.
func (tm *timers[R]) tidy() {
	if tm.hdead <= 16 || 2*tm.hdead <= len(tm.heap) {
		return
	}
	kept := make([]timed[R], 0, len(tm.heap)-tm.hdead)
	for _, e := range tm.heap {
		if !e.t.Settled() {
			kept = append(kept, e)
		}
	}
	tm.heap, tm.hdead = kept, 0
	for i := len(kept)/2 - 1; i >= 0; i-- {
		tm.down(i)
	}
}

func (tm *timers[R]) less(i, j int) bool { return int32(tm.heap[i].at-tm.heap[j].at) < 0 }

func (tm *timers[R]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !tm.less(i, p) {
			return
		}
		tm.heap[i], tm.heap[p] = tm.heap[p], tm.heap[i]
		i = p
	}
}

func (tm *timers[R]) down(i int) {
	h := tm.heap
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if rr := l + 1; rr < len(h) && tm.less(rr, l) {
			m = rr
		}
		if !tm.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (tm *timers[R]) pop() {
	last := len(tm.heap) - 1
	tm.heap[0] = tm.heap[last]
	tm.heap[last] = timed[R]{}
	tm.heap = tm.heap[:last]
	tm.down(0)
	if cap(tm.heap) > 1024 && len(tm.heap) < cap(tm.heap)/4 {
		tm.heap = append([]timed[R](nil), tm.heap...)
	}
}

// arm sets the registry timer for the earliest deadline, unless it is set
// for that deadline or an earlier one already: under a steady stream of
// messages the earliest deadline moves with every message that settles,
// and resetting a runtime timer each time (a lock of the runtime's timer
// heap) costs more than letting the timer fire early once per window,
// when expire finds nothing due and sets it again. The caller holds the
// lock.
func (r *Registry[R]) arm() {
	_, at, ok := r.next()
	if e, mine := r.timers.top(); mine && (!ok || int32(e.at-at) < 0) {
		at, ok = e.at, true
	}
	if !ok || r.shut && r.pending == 0 {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.armed = false
		return
	}
	if r.armed && int32(at-r.armedAt) >= 0 {
		return
	}
	d := time.Duration(int32(at-r.now())) * time.Millisecond
	if d < 0 {
		d = 0
	}
	if r.timer == nil {
		r.timer = time.AfterFunc(d, r.expire)
	} else {
		r.timer.Reset(d)
	}
	r.armed, r.armedAt = true, at
}

// expire ends the window of every tracker whose deadline has passed.
func (r *Registry[R]) expire() {
	r.g.mu.Lock()
	r.armed = false
	now := r.now()
	for {
		t, at, ok := r.next()
		if !ok || int32(at-now) > 0 {
			break
		}
		r.timers.pos++
		r.timeOut(t)
	}
	for {
		e, ok := r.timers.top()
		if !ok || int32(e.at-now) > 0 {
			break
		}
		if !r.timeOut(e.t) {
			r.timers.pop() // never loop on it
		}
	}
	r.arm()
	r.unlock()
}

// timeOut ends t's window and reports whether that settled it, as it
// always does: a tracker that did not settle is taken out of the timers.
func (r *Registry[R]) timeOut(t *Tracker[R]) bool {
	if t.transition(TimedOut, nil) && t.Settled() {
		return true
	}
	// Unreachable: a timeout settles every pending tracker.
	if t.word.Load()&hasDeadline != 0 {
		t.word.And(^uint32(hasDeadline))
		r.timers.live--
	}
	return false
}

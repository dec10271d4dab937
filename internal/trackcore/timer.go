package trackcore

import "time"

// maxWindow is the longest tracking window. Deadlines are kept as wrapping
// 32-bit millisecond counts (4 bytes per tracker instead of 8 or more), which
// compare correctly while all of them lie within 2^31 ms of each other.
const maxWindow = 24 * 24 * time.Hour

// The timer heap: one min-heap of trackers by deadline and one time.Timer per
// Registry, armed for the earliest deadline. No tracker owns a timer.

// now returns the registry clock: milliseconds since the epoch, wrapping.
func (r *Registry[R]) now() uint32 { return uint32(time.Since(r.epoch).Milliseconds()) }

func (r *Registry[R]) less(i, j int) bool {
	return int32(r.heap[i].deadline-r.heap[j].deadline) < 0
}

func (r *Registry[R]) swap(i, j int) {
	h := r.heap
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = int32(i)
	h[j].heapIdx = int32(j)
}

func (r *Registry[R]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !r.less(i, p) {
			return
		}
		r.swap(i, p)
		i = p
	}
}

func (r *Registry[R]) down(i int) {
	n := len(r.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if rr := l + 1; rr < n && r.less(rr, l) {
			m = rr
		}
		if !r.less(m, i) {
			return
		}
		r.swap(i, m)
		i = m
	}
}

func (r *Registry[R]) push(t *Tracker[R]) {
	t.heapIdx = int32(len(r.heap))
	r.heap = append(r.heap, t)
	r.up(int(t.heapIdx))
}

func (r *Registry[R]) remove(t *Tracker[R]) {
	i := int(t.heapIdx)
	last := len(r.heap) - 1
	if i != last {
		r.swap(i, last)
	}
	r.heap[last] = nil
	r.heap = r.heap[:last]
	t.heapIdx = -1
	if i != last {
		r.down(i)
		r.up(i)
	}
	if cap(r.heap) > 1024 && len(r.heap) < cap(r.heap)/4 {
		r.heap = append([]*Tracker[R](nil), r.heap...)
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
	if len(r.heap) == 0 || r.shut && r.pending == 0 {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.armed = false
		return
	}
	at := r.heap[0].deadline
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
	for len(r.heap) > 0 && int32(r.heap[0].deadline-now) <= 0 {
		t := r.heap[0]
		if !t.transition(TimedOut, nil) || !t.Settled() {
			// Unreachable: a timeout settles every pending tracker. Never loop on it.
			r.remove(t)
			t.word.And(^uint32(hasDeadline))
		}
	}
	r.arm()
	r.unlock()
}

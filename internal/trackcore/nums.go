package trackcore

import "sort"

// nums holds a registry's pending trackers by registration number
// (Tracker.num), which is also the order their windows end in when they
// have the registry's window (see timers). An own id is looked up here by
// the number it encrypts: 8 bytes per pending tracker where a map of ids
// took 19 to 38, and no id string.
//
// Settled trackers stay in ts until swept (Registry.sweepNums): from the
// front at once, from inside when they outnumber the pending ones, so
// memory follows the number of pending trackers, at amortized O(1) per
// settled tracker, as for a conversation's order. Until then a settled
// tracker stays reachable, with its extra. A sweep from inside copies the
// pending trackers in one go under the lock (a few milliseconds at
// 1,000,000 pending), as a conversation's compaction does; unlike the
// index of foreign ids (maxIndexCopy) it is not bounded. The same unlock
// may also walk the pending trackers to compact the registration marks
// (timers.compactMarks): one read of each tracker's word, amortized over as
// many new marks, and since a mark needs a millisecond of its own, at most
// once every pending-count milliseconds (about 17 minutes at 1,000,000).
type nums[R any] struct {
	ts   []*Tracker[R] // by num, ascending; settled ones until swept
	dead int           // settled entries of ts
	peak int           // longest ts since its array was last copied
}

func (n *nums[R]) add(t *Tracker[R]) {
	n.ts = append(n.ts, t)
	n.peak = max(n.peak, len(n.ts))
}

// find returns the tracker with registration number num, settled or not,
// or nil. Numbers are consecutive but for the trackers swept from inside,
// so the tracker is at index num - ts[0].num when nothing was, and never
// after it: the search starts there.
func (n *nums[R]) find(num uint64) *Tracker[R] {
	ts := n.ts
	if len(ts) == 0 || num < ts[0].num || num > ts[len(ts)-1].num {
		return nil
	}
	hi := min(num-ts[0].num, uint64(len(ts)-1))
	if t := ts[hi]; t.num == num {
		return t
	}
	lo := uint64(len(ts)-1) - min(ts[len(ts)-1].num-num, uint64(len(ts)-1))
	i := int(lo) + sort.Search(int(hi-lo), func(i int) bool { return ts[int(lo)+i].num >= num })
	if t := ts[i]; t.num == num {
		return t
	}
	return nil
}

// sweepNums drops settled trackers from byNum, keeping the timers' place in
// it. The caller holds the lock.
func (r *Registry[R]) sweepNums() {
	n := &r.byNum
	ts := n.ts
	i := 0
	for i < len(ts) && ts[i].word.Load()&inRegistry == 0 {
		ts[i] = nil
		i++
	}
	ts, n.dead = ts[i:], n.dead-i
	r.timers.pos = max(r.timers.pos-i, 0)
	if n.dead > 16 && n.dead > len(ts)-n.dead {
		kept := make([]*Tracker[R], 0, len(ts)-n.dead)
		pos := 0
		for j, t := range ts {
			if t.word.Load()&inRegistry != 0 {
				if j < r.timers.pos {
					pos++
				}
				kept = append(kept, t)
			}
		}
		ts, n.dead, n.peak, r.timers.pos = kept, 0, len(kept), pos
	} else if n.peak > 1024 && len(ts) < n.peak/4 {
		// Trimmed from the front, ts still holds the array of its
		// largest burst: copy what is left.
		ts = append([]*Tracker[R](nil), ts...)
		n.peak = len(ts)
	}
	n.ts = ts
	bound := r.count
	if r.timers.pos < len(ts) {
		bound = ts[r.timers.pos].num
	}
	r.timers.trimMarks(bound)
	if len(r.timers.marks) > 2*r.pending+16 {
		r.timers.compactMarks(ts[r.timers.pos:])
	}
}

// compactMarks keeps only the marks that pending trackers with the
// registry's window in ts (byNum from pos on) need: one message that stays
// pending must not keep a mark for every millisecond in which messages
// that settled since were registered. Run when marks outnumber twice the
// pending trackers, it leaves at most one per pending tracker, so its
// O(len(ts)) walk is amortized over as many new marks.
func (tm *timers[R]) compactMarks(ts []*Tracker[R]) {
	m := tm.marks
	kept := make([]mark, 0, min(len(m), len(ts)))
	j := 0
	for _, t := range ts {
		if t.word.Load()&(inRegistry|hasDeadline|ownWindow) != inRegistry|hasDeadline {
			continue
		}
		for j+1 < len(m) && m[j+1].num <= t.num {
			j++
		}
		if n := len(kept); n == 0 || kept[n-1] != m[j] {
			kept = append(kept, m[j])
		}
	}
	if len(kept) == 0 && len(m) > 0 {
		kept = append(kept, m[len(m)-1]) // the next registration may share its millisecond
	}
	tm.marks, tm.mpeak = kept, len(kept)
}

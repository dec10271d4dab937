package sm

import "time"

// The default window (Config.Window 0) follows the server's queue: it is
// DefaultWindow while the server answers our <r/> within a few
// milliseconds of the route's own round trip, and shrinks toward
// MinWindow while what we have in flight waits in the server's queue for
// longer. The rule works on the round-trip samples the State already
// takes (an <r/> written with no other one unanswered, to its <a/>), so
// it costs no timer and nothing per stanza.
const (
	// MinWindow is the floor of the default window. Measured against
	// Prosody 0.12 archiving every message for an offline account
	// (docs/benchmarks.md, "Bulk to an offline account"): 32 stanzas in
	// flight, about 10 KB, stay within about one read of the server's, so
	// the server never pauses its reading behind a backlog, while a fixed
	// window of 256 left it paused half the time.
	MinWindow = 32

	// winTarget is the queueing delay (round trip beyond the route's) that
	// a shrink aims at: the window then holds about winTarget of the
	// server's work.
	winTarget = 20 * time.Millisecond
	// winHigh and winLow are the queueing delays above which the window
	// shrinks (after winHighRun samples in a row: a server kept off the
	// CPU for a moment is not a queue) and below which it grows, by half
	// per sample.
	winHigh    = 30 * time.Millisecond
	winLow     = 10 * time.Millisecond
	winHighRun = 3
	// winCleanN is the most stanzas in flight, the request included, for a
	// sample to measure the route: nothing queued ahead of it.
	winCleanN = 2
	// winProbeEvery is how long a route measure is trusted while the
	// window is below its cap: then the window drops to one stanza until
	// a fresh one is taken (at most winProbeSamples samples).
	winProbeEvery   = 10 * time.Second
	winProbeSamples = 4
)

// adaptive is the state of the default window. Guarded by st.mu.
type adaptive struct {
	w int // the window; 0: DefaultWindow (the State's first connection)

	// base is the route's round trip: the least sample with at most
	// winCleanN stanzas in flight, or lower since (a sample lower than it
	// proves a shorter route, whatever was in flight); 0: none yet on the
	// connection. baseAt is when a clean sample last set it.
	base, baseAt int64

	// probing: the window is one stanza until a clean sample comes (or
	// probeN samples came), so that a stale base is measured again.
	probing bool
	probeN  int

	// adjAt is when w last changed: a sample of an <r/> written before it
	// says nothing of the new window. high counts the samples in a row
	// since then with a queueing delay above winHigh.
	adjAt int64
	high  int
}

// size returns the window that Pace applies now.
func (a *adaptive) size() int {
	switch {
	case a.probing:
		return 1
	case a.w == 0:
		return DefaultWindow
	}
	return a.w
}

// newConn forgets what was measured on the previous connection (its
// route may differ), keeping the window.
func (a *adaptive) newConn() {
	a.base, a.baseAt, a.probing, a.probeN, a.adjAt, a.high = 0, 0, false, 0, 0, 0
}

// sample takes the round trip d of an <r/> written at wrote, when n
// stanzas (the request's included) were in flight, answered at now. It
// reports whether the window grew (room to hand to the waiters). A round
// trip that is not positive (the wall clock stepped back) is ignored.
func (a *adaptive) sample(now, wrote, d int64, n int) (grew bool) {
	if d <= 0 {
		return false
	}
	if a.w == 0 {
		a.w = DefaultWindow
	}
	before := a.size()
	stale := now-a.baseAt >= int64(winProbeEvery)
	switch {
	case n <= winCleanN && (a.base == 0 || d < a.base || stale || a.probing):
		a.base, a.baseAt = d, now
		a.probing = false
	case a.base != 0 && d < a.base:
		a.base = d
	}
	if a.probing {
		if a.probeN++; a.probeN >= winProbeSamples {
			a.probing, a.baseAt = false, now // try again later
		}
		return a.size() > before
	}
	if wrote >= a.adjAt && n >= a.w/2 {
		a.decide(now, d)
	}
	if a.w < DefaultWindow && (a.base == 0 || now-a.baseAt >= int64(winProbeEvery)) {
		a.probing, a.probeN = true, 0
	}
	return a.size() > before
}

// decide moves the window on a sample taken with the window in use: down
// toward holding winTarget of queueing once winHighRun samples in a row
// queued for longer than winHigh, up by half on one that queued for less
// than winLow. Without a base the whole round trip counts as
// queueing (it errs on the server's side; a probe follows).
func (a *adaptive) decide(now, d int64) {
	q := d - a.base
	switch {
	case q > int64(winHigh):
		if a.high++; a.high < winHighRun {
			return
		}
		w := int64(a.w) * (a.base + int64(winTarget)) / d
		a.set(now, int(max(w, MinWindow)))
	case q < int64(winLow):
		a.set(now, min(a.w+a.w/2, DefaultWindow))
	default:
		a.high = 0
	}
}

// set changes the window to w.
func (a *adaptive) set(now int64, w int) {
	a.high = 0
	if w != a.w {
		a.w, a.adjAt = w, now
	}
}

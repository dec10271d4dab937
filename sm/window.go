package sm

import "time"

// The default window (Config.Window 0) follows the server's queue: it is
// DefaultWindow while the server answers our <r/> within a few
// milliseconds of the route's own round trip, and shrinks toward
// MinWindow while what we have in flight waits in the server's queue for
// longer. It times one <r/> at a time (tOrd in conn), so it costs no
// timer and nothing per stanza, and it never sets the window below
// MinWindow: nothing here can hold Pace longer than a fixed window of the
// same size would.
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
	// winRouteAge is the period of the route's windowed minimum: the
	// measure is the least clean sample of the current period and the one
	// before, so a route that got longer is learned from the clean samples
	// of up to two periods later (none: the last measure stands).
	winRouteAge = 10 * time.Second
)

// adaptive is the state of the default window. Guarded by st.mu.
type adaptive struct {
	w int // the window; 0: DefaultWindow (no route measure yet)

	// base is the route's round trip: the least of prev and cur, the
	// least clean samples (at most winCleanN stanzas in flight, or lower
	// than base whatever was in flight) of the previous period of
	// winRouteAge and of the current one, begun at curAt; 0: none yet on
	// the connection, and the window does not shrink.
	base, prev, cur, curAt int64

	// adjAt is when w last changed: a sample of an <r/> written before it
	// says nothing of the new window. high counts the samples in a row
	// since then with a queueing delay above winHigh.
	adjAt int64
	high  int
}

// size returns the window that Pace applies now.
func (a *adaptive) size() int {
	if a.w == 0 {
		return DefaultWindow
	}
	return a.w
}

// newConn forgets what was measured on the previous connection (its
// route may differ): without a route measure the window is at its cap.
func (a *adaptive) newConn() {
	*a = adaptive{}
}

// sample takes the round trip d of an <r/> (or of <enable/>: n 0) written
// at wrote, when n stanzas (the request's included) were in flight,
// answered at now. It reports whether the window grew (room to hand to
// the waiters). A round trip that is not positive (the wall clock stepped
// back) is ignored.
func (a *adaptive) sample(now, wrote, d int64, n int) (grew bool) {
	if d <= 0 {
		return false
	}
	if n <= winCleanN || (a.base != 0 && d < a.base) {
		a.route(now, d)
	}
	if a.base == 0 || wrote < a.adjAt || n < a.size()/2 {
		return false
	}
	before := a.size()
	a.decide(now, d)
	return a.size() > before
}

// route takes a clean sample d into the windowed minimum.
func (a *adaptive) route(now, d int64) {
	if age := now - a.curAt; a.curAt == 0 || age >= int64(winRouteAge) {
		a.prev = a.cur
		if age >= 2*int64(winRouteAge) {
			a.prev = 0 // the current period ended long ago
		}
		a.cur, a.curAt = 0, now
	}
	if a.cur == 0 || d < a.cur {
		a.cur = d
	}
	a.base = a.cur
	if a.prev != 0 && a.prev < a.base {
		a.base = a.prev
	}
}

// decide moves the window on a sample taken with the window in use: down
// toward holding winTarget of queueing once winHighRun samples in a row
// queued for longer than winHigh, up by half on one that queued for less
// than winLow.
func (a *adaptive) decide(now, d int64) {
	w := a.size()
	q := d - a.base
	switch {
	case q > int64(winHigh):
		if a.high++; a.high < winHighRun {
			return
		}
		a.set(now, int(max(int64(w)*(a.base+int64(winTarget))/d, MinWindow)))
	case q < int64(winLow):
		a.set(now, min(w+w/2, DefaultWindow))
	default:
		a.high = 0
	}
}

// set changes the window to w.
func (a *adaptive) set(now int64, w int) {
	a.high = 0
	if w != a.size() {
		a.w, a.adjAt = w, now
	}
}

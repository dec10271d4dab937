package sm

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// winLink feeds an adaptive window the samples of a scripted link: every
// sample is of an <r/> written with the whole window in flight, answered
// after the route's round trip plus perStanza for each stanza queued.
type winLink struct {
	t         *testing.T
	a         adaptive
	now       int64
	route     time.Duration
	perStanza time.Duration
}

// round takes one sample with the window full and checks the bounds.
func (l *winLink) round() {
	l.t.Helper()
	n := l.a.size()
	d := int64(l.route) + int64(n)*int64(l.perStanza)
	wrote := l.now
	l.now += d
	l.a.sample(l.now, wrote, d, n)
	if w := l.a.size(); w < MinWindow || w > DefaultWindow {
		l.t.Fatalf("window %d (size %d), want within [%d, %d]", l.a.size(), w, MinWindow, DefaultWindow)
	}
}

// lone takes a sample of a lone stanza: the route's measure.
func (l *winLink) lone() {
	d := int64(l.route) + int64(l.perStanza)
	wrote := l.now
	l.now += d
	l.a.sample(l.now, wrote, d, 1)
}

func newWinLink(t *testing.T, route, perStanza time.Duration) *winLink {
	l := &winLink{t: t, route: route, perStanza: perStanza, now: int64(time.Hour)}
	l.lone()
	return l
}

// TestWindowShrinksAndGrowsBack: a server that takes 1 ms per stanza
// (Prosody archiving for an offline account) brings the default window to
// its floor within a few round trips, and it stays there; once the server
// is quick again (20 µs per stanza) it grows back to DefaultWindow.
func TestWindowShrinksAndGrowsBack(t *testing.T) {
	l := newWinLink(t, 200*time.Microsecond, time.Millisecond)
	if l.a.size() != DefaultWindow {
		t.Fatalf("first window %d, want %d", l.a.size(), DefaultWindow)
	}
	for range 4 {
		l.round()
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d after 4 slow round trips, want %d", l.a.size(), MinWindow)
	}
	for range 1000 {
		l.round()
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d after 1,000 slow round trips, want %d", l.a.size(), MinWindow)
	}
	l.perStanza = 20 * time.Microsecond
	for range 12 {
		l.round()
	}
	if l.a.size() != DefaultWindow {
		t.Fatalf("window %d after 12 quick round trips, want %d", l.a.size(), DefaultWindow)
	}
	for range 1000 {
		l.round()
	}
	if l.a.size() != DefaultWindow {
		t.Fatalf("window %d after 1,000 quick round trips, want %d", l.a.size(), DefaultWindow)
	}
}

// TestWindowIgnoresOneLateAck: late answers fewer than winHighRun in a row
// do not shrink the window, winHighRun in a row do; lone stanzas, however
// late, never do.
func TestWindowIgnoresOneLateAck(t *testing.T) {
	l := newWinLink(t, time.Millisecond, 10*time.Microsecond)
	late := func(n int) {
		wrote := l.now
		l.now += int64(200 * time.Millisecond)
		l.a.sample(l.now, wrote, int64(200*time.Millisecond), n)
	}
	for range 3 {
		for range winHighRun - 1 {
			late(DefaultWindow)
		}
		l.round()
	}
	if l.a.size() != DefaultWindow {
		t.Fatalf("window %d after runs of %d late answers, want %d", l.a.size(), winHighRun-1, DefaultWindow)
	}
	for range 10 {
		late(1)
	}
	if l.a.size() != DefaultWindow {
		t.Fatalf("window %d after late answers to lone stanzas, want %d", l.a.size(), DefaultWindow)
	}
	for range winHighRun {
		late(DefaultWindow)
	}
	if l.a.size() >= DefaultWindow {
		t.Fatalf("window %d after %d late answers in a row, want less than %d", l.a.size(), winHighRun, DefaultWindow)
	}
}

// TestWindowLearnsALongerRoute: a route that becomes 100 ms longer (with a
// quick server) first looks like a queue and shrinks the window, never
// below MinWindow, until clean samples of the longer route, two periods of
// winRouteAge later, make it the route's measure: the window grows back.
func TestWindowLearnsALongerRoute(t *testing.T) {
	l := newWinLink(t, time.Millisecond, 10*time.Microsecond)
	for range 10 {
		l.round()
	}
	l.route = 100 * time.Millisecond
	for range 8 {
		l.round()
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d after the route grew, want %d (taken for a queue)", l.a.size(), MinWindow)
	}
	for l.a.base != int64(l.route+l.perStanza) {
		if l.now > int64(time.Hour+3*winRouteAge) {
			t.Fatalf("base %v after %v, want %v", time.Duration(l.a.base), 3*winRouteAge, l.route+l.perStanza)
		}
		l.round()
		l.lone()
	}
	for range 12 {
		l.round()
	}
	if l.a.size() != DefaultWindow {
		t.Fatalf("window %d on the longer route, want %d", l.a.size(), DefaultWindow)
	}
}

// TestWindowNewConnection: a new connection measures its route again, and
// until it has a measure its window is the cap, however late the answers.
func TestWindowNewConnection(t *testing.T) {
	l := newWinLink(t, time.Millisecond, time.Millisecond)
	for range 3 {
		l.round()
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d on a slow server, want %d", l.a.size(), MinWindow)
	}
	l.a.newConn()
	for range 10 {
		l.round()
	}
	if l.a.size() != DefaultWindow || l.a.base != 0 {
		t.Fatalf("new connection without a route measure: window %d, base %d; want %d, 0", l.a.size(), l.a.base, DefaultWindow)
	}
	l.lone()
	for range 3 {
		l.round()
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d once the route was measured, want %d", l.a.size(), MinWindow)
	}
}

// TestWindowFixed: Config.Window other than 0 is a fixed window, whatever
// the round trips.
func TestWindowFixed(t *testing.T) {
	for _, tc := range []struct{ cfg, want int }{{0, DefaultWindow}, {64, 64}, {-1, -1}, {maxMaxUnacked + 1, maxMaxUnacked}} {
		st := New(Config{Window: tc.cfg})
		if got := st.Info().Window; got != tc.want {
			t.Errorf("Config.Window %d: Info().Window %d, want %d", tc.cfg, got, tc.want)
		}
	}
}

// queueServer makes srv answer each <r/> once it would have processed
// every stanza before it, at perStanza each, one after the other, plus
// route: a server whose queue is what we have in flight.
type queueServer struct {
	mu        sync.Mutex
	perStanza time.Duration
	route     time.Duration
	busy      time.Time // when the server is done with what it got
	lastH     uint32
}

func (q *queueServer) delay(h uint32) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if q.busy.Before(now) {
		q.busy = now
	}
	q.busy = q.busy.Add(time.Duration(h-q.lastH) * q.perStanza)
	q.lastH = h
	return q.busy.Sub(now) + q.route
}

func (q *queueServer) setPerStanza(d time.Duration) {
	q.mu.Lock()
	q.perStanza = d
	q.mu.Unlock()
}

// TestDefaultWindowFollowsTheServer: through a server that takes 2 ms per
// stanza, a sender pacing with the default window soon keeps at most
// MinWindow stanzas in flight (with the fixed window of 256 it kept 256),
// through a quick one it gets the whole DefaultWindow back, and a lone
// message after the burst is still requested at once.
func TestDefaultWindowFollowsTheServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		q := &queueServer{perStanza: 2 * time.Millisecond, route: 500 * time.Microsecond}
		srv.rDelay = q.delay
		const total = 6002
		var acked atomic.Int64
		burstsAcked, allAcked := make(chan struct{}), make(chan struct{})
		st := New(Config{OnAcked: func(Stanza) {
			switch acked.Add(1) {
			case total - 1:
				close(burstsAcked)
			case total:
				close(allAcked)
			}
		}})
		c := mustDial(t, srv, st, nil)
		// The fake server answers <enabled/> at once: a lone message
		// measures the route.
		sendMsg(t, st, c.sess, "first")
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		// burst sends n messages and returns the most stanzas in flight
		// after a write among the last n-skip.
		next := 0
		burst := func(n, skip int) (most int) {
			for i := range n {
				slot, err := st.Pace(t.Context())
				if err != nil {
					t.Fatalf("Pace: %v", err)
				}
				sendMsg(t, st, c.sess, fmt.Sprint("m", next))
				next++
				slot.Release()
				if u := st.Info().Unacked; i >= skip && u > most {
					most = u
				}
			}
			return most
		}
		if most := burst(3000, 1500); most > MinWindow {
			t.Errorf("slow server: %d stanzas in flight, want at most %d", most, MinWindow)
		}
		q.setPerStanza(10 * time.Microsecond)
		if most := burst(3000, 2000); most <= MinWindow {
			t.Errorf("quick server: at most %d stanzas in flight, want more than %d", most, MinWindow)
		}
		if w := st.Info().Window; w != DefaultWindow {
			t.Errorf("quick server: window %d, want %d", w, DefaultWindow)
		}
		<-burstsAcked
		// The link goes idle (fake time): the answers to the last
		// requests come back.
		time.Sleep(time.Second)
		synctest.Wait()
		srv.mu.Lock()
		rs := srv.rs
		srv.mu.Unlock()
		sendMsg(t, st, c.sess, "lone")
		synctest.Wait()
		srv.mu.Lock()
		rs = srv.rs - rs
		srv.mu.Unlock()
		if rs != 1 {
			t.Errorf("a lone message after the bursts: %d <r/> at once, want 1", rs)
		}
		<-allAcked
		c.close()
	})
}

// TestWindowIgnoresClockSteps: a round trip that is not positive (the
// wall clock stepped back between the <r/> and its answer) is no route
// measure: taken as one, a negative base made every later round trip
// look queued.
func TestWindowIgnoresClockSteps(t *testing.T) {
	l := newWinLink(t, time.Millisecond, 10*time.Microsecond)
	base := l.a.base
	l.a.sample(l.now, l.now+int64(time.Second), -int64(time.Second), 1)
	l.a.sample(l.now, l.now, 0, 1)
	if l.a.base != base {
		t.Fatalf("base %v after samples of -1 s and 0, want %v", time.Duration(l.a.base), time.Duration(base))
	}
	for range 10 {
		l.round()
	}
	if l.a.size() != DefaultWindow {
		t.Fatalf("window %d, want %d", l.a.size(), DefaultWindow)
	}
}

// bulkRun is what runBulk saw: virtual time until the server counted
// every message it did not drop, the
// longest Pace, the most stanzas in flight, the least window seen and the
// window at the end.
type bulkRun struct {
	took, longest       time.Duration
	most, least, window int
}

// runBulk writes n messages through Pace with Config.Window window to a
// server modelled by q that drops, without counting, the stanzas lose
// picks; with lone, a lone message first measures the route (the fake
// server answers <enabled/> in no time).
func runBulk(t *testing.T, window int, q *queueServer, lose func(string) bool, lone bool, n int) (r bulkRun) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.rDelay, srv.lose = q.delay, lose
		want := int64(n)
		if lone {
			want++
		}
		for i := range n {
			if lose != nil && lose(fmt.Sprint("m", i)) {
				want--
			}
		}
		var acked atomic.Int64
		allAcked := make(chan struct{})
		st := New(Config{Window: window, OnAcked: func(Stanza) {
			if acked.Add(1) == want {
				close(allAcked)
			}
		}})
		c := mustDial(t, srv, st, nil)
		if lone {
			sendMsg(t, st, c.sess, "first")
			synctest.Wait()
			time.Sleep(time.Second)
			synctest.Wait()
		}
		start := time.Now()
		r.least = st.Info().Window
		for i := range n {
			before := time.Now()
			slot, err := st.Pace(t.Context())
			if err != nil {
				t.Fatalf("Pace: %v", err)
			}
			r.longest = max(r.longest, time.Since(before))
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
			slot.Release()
			info := st.Info()
			r.most, r.least = max(r.most, info.Unacked), min(r.least, info.Window)
		}
		r.window = st.Info().Window
		<-allAcked
		r.took = time.Since(start)
		c.close()
	})
	return r
}

// TestDefaultWindowUncountedStanzas: stanzas the server never counts stay
// in flight for good; with the default window they cost a few places, as
// with the fixed 256, and never hold Pace (rv-win B1: a one-stanza probe
// window waited for the idle <r/> every 30 s, 10 h 57 min for 12,000
// messages against 24 s).
func TestDefaultWindowUncountedStanzas(t *testing.T) {
	lose := func(id string) bool { return id == "m10" || id == "m11" || id == "m12" }
	slow := func() *queueServer {
		return &queueServer{perStanza: 2 * time.Millisecond, route: 500 * time.Microsecond}
	}
	const n = 12000
	fixed := runBulk(t, DefaultWindow, slow(), lose, true, n)
	def := runBulk(t, 0, slow(), lose, true, n)
	t.Logf("fixed %d: %v, longest Pace %v; default: %v, longest Pace %v, window %d", DefaultWindow, fixed.took, fixed.longest, def.took, def.longest, def.window)
	if def.took > fixed.took+fixed.took/10 {
		t.Errorf("default window: %d messages in %v, fixed %d: %v", n, def.took, DefaultWindow, fixed.took)
	}
	if def.longest > time.Second {
		t.Errorf("default window: a Pace waited %v", def.longest)
	}
	if def.window > MinWindow {
		t.Errorf("default window %d on the slow server, want at most %d", def.window, MinWindow)
	}
}

// TestDefaultWindowNewConnectionLongRoute: a new connection over a 100 ms
// route to a quick server, bursting at once (no clean sample: the first
// answers come with the burst in flight), keeps the whole DefaultWindow
// (rv-win S1: the round trip was taken for a queue and the window shrank).
func TestDefaultWindowNewConnectionLongRoute(t *testing.T) {
	q := &queueServer{perStanza: 20 * time.Microsecond, route: 100 * time.Millisecond}
	r := runBulk(t, 0, q, nil, false, 5000)
	if r.least != DefaultWindow || r.most < DefaultWindow {
		t.Errorf("window down to %d, at most %d in flight; want %d", r.least, r.most, DefaultWindow)
	}
}

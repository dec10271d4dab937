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
	if w := l.a.size(); w != 1 && (w < MinWindow || w > DefaultWindow) || l.a.w < MinWindow || l.a.w > DefaultWindow {
		l.t.Fatalf("window %d (size %d), want within [%d, %d]", l.a.w, w, MinWindow, DefaultWindow)
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
	if l.a.w != MinWindow {
		t.Fatalf("window %d after 4 slow round trips, want %d", l.a.w, MinWindow)
	}
	for range 1000 {
		l.round()
	}
	if l.a.w != MinWindow {
		t.Fatalf("window %d after 1,000 slow round trips, want %d", l.a.w, MinWindow)
	}
	l.perStanza = 20 * time.Microsecond
	for range 12 {
		l.round()
	}
	if l.a.w != DefaultWindow {
		t.Fatalf("window %d after 12 quick round trips, want %d", l.a.w, DefaultWindow)
	}
	for range 1000 {
		l.round()
	}
	if l.a.w != DefaultWindow {
		t.Fatalf("window %d after 1,000 quick round trips, want %d", l.a.w, DefaultWindow)
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
	if l.a.w != DefaultWindow {
		t.Fatalf("window %d after runs of %d late answers, want %d", l.a.w, winHighRun-1, DefaultWindow)
	}
	for range 10 {
		late(1)
	}
	if l.a.w != DefaultWindow {
		t.Fatalf("window %d after late answers to lone stanzas, want %d", l.a.w, DefaultWindow)
	}
	for range winHighRun {
		late(DefaultWindow)
	}
	if l.a.w >= DefaultWindow {
		t.Fatalf("window %d after %d late answers in a row, want less than %d", l.a.w, winHighRun, DefaultWindow)
	}
}

// TestWindowLearnsALongerRoute: a route that becomes 100 ms longer (with a
// quick server) first looks like a queue and shrinks the window, but the
// route is measured again winProbeEvery later, with one stanza in flight,
// and the window grows back.
func TestWindowLearnsALongerRoute(t *testing.T) {
	l := newWinLink(t, time.Millisecond, 10*time.Microsecond)
	for range 10 {
		l.round()
	}
	l.route = 100 * time.Millisecond
	for range 8 {
		l.round()
	}
	if l.a.w != MinWindow {
		t.Fatalf("window %d after the route grew, want %d (taken for a queue)", l.a.w, MinWindow)
	}
	start, probed := l.now, false
	for !probed && l.now-start <= int64(winProbeEvery) {
		l.round()
		probed = l.a.size() == 1
	}
	if !probed {
		t.Fatalf("no probe within %v at the floor", winProbeEvery)
	}
	l.round() // the probe's lone stanza
	if l.a.size() != MinWindow || l.a.base != int64(l.route+l.perStanza) {
		t.Fatalf("after the probe: window %d, base %v; want %d, %v", l.a.size(), time.Duration(l.a.base), MinWindow, l.route+l.perStanza)
	}
	for range 12 {
		l.round()
	}
	if l.a.w != DefaultWindow {
		t.Fatalf("window %d on the longer route, want %d", l.a.w, DefaultWindow)
	}
}

// TestWindowProbeGivesUp: a probe that gets no lone sample (other stanzas
// keep the link busy) ends after winProbeSamples samples, with the window
// as it was, and is tried again winProbeEvery later.
func TestWindowProbeGivesUp(t *testing.T) {
	l := newWinLink(t, time.Millisecond, time.Millisecond)
	for range 3 {
		l.round()
	}
	l.now += int64(winProbeEvery)
	l.round()
	if l.a.size() != 1 {
		t.Fatalf("window %d with a stale route, want 1 (probing)", l.a.size())
	}
	for range winProbeSamples {
		wrote := l.now
		l.now += int64(5 * time.Millisecond)
		l.a.sample(l.now, wrote, int64(5*time.Millisecond), 5)
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d after a probe without a lone sample, want %d", l.a.size(), MinWindow)
	}
	for range 10 {
		l.round()
	}
	if l.a.size() != MinWindow {
		t.Fatalf("window %d right after the failed probe, want %d", l.a.size(), MinWindow)
	}
}

// TestWindowNewConnection: a new connection keeps the window and measures
// its route again.
func TestWindowNewConnection(t *testing.T) {
	l := newWinLink(t, time.Millisecond, time.Millisecond)
	for range 3 {
		l.round()
	}
	l.a.newConn()
	if l.a.size() != MinWindow || l.a.base != 0 {
		t.Fatalf("after newConn: window %d, base %d; want %d, 0", l.a.size(), l.a.base, MinWindow)
	}
	l.round()
	if l.a.size() != 1 {
		t.Fatalf("window %d on a new connection below the cap, want 1 (probing its route)", l.a.size())
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
		const total = 6001
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
	if l.a.w != DefaultWindow {
		t.Fatalf("window %d, want %d", l.a.w, DefaultWindow)
	}
}

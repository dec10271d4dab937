//go:build linux

package sm

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// goneRaw is a socket whose every use fails, as a closed one's does.
type goneRaw struct{}

var errGone = errors.New("socket gone")

func (goneRaw) Control(func(uintptr)) error    { return errGone }
func (goneRaw) Read(func(uintptr) bool) error  { return errGone }
func (goneRaw) Write(func(uintptr) bool) error { return errGone }

// noDelayLink is a TCP link whose client end, a noDelayConn, is stored in
// *nd when dialled.
func noDelayLink(nd **noDelayConn) *tcpLink {
	return &tcpLink{sndbuf: 1 << 20, rcvbuf: 1 << 20, outer: func(c net.Conn) net.Conn {
		*nd = &noDelayConn{Conn: c, rs: make(chan struct{}, 100)}
		return *nd
	}}
}

// coalesceSession starts a session over TCP whose client socket records
// TCP_NODELAY at each write, with cfg and no time rule.
func coalesceSession(t *testing.T, cfg Config) (*fakeServer, *recorder, *noDelayConn, *State, *client) {
	t.Helper()
	cfg.AckDelay, cfg.IdleProbe = time.Hour, time.Hour
	srv := newFakeServer(t)
	rec := newRecorder()
	var nd *noDelayConn
	lk := noDelayLink(&nd)
	st, c := tcpEnabled(t, srv, rec.config(cfg), lk)
	return srv, rec, nd, st, c
}

// holdRequest has srv hold its answers to <r/> and writes a request that
// stays unanswered: no rule books another during a burst that follows,
// whose writes could then not turn Nagle's algorithm on. It returns the
// current connection.
func holdRequest(t *testing.T, srv *fakeServer, st *State, c *client) *conn {
	t.Helper()
	srv.mu.Lock()
	srv.holdR = true
	srv.mu.Unlock()
	st.mu.Lock()
	cn := st.conn
	st.mu.Unlock()
	if _, _, err := st.request(t.Context(), c.sess, cn, true); err != nil {
		t.Fatal(err)
	}
	return cn
}

// burstNagle starts a coalesceSession (with a window of n+8 unless cfg
// sets one) whose <r/> the server holds, and writes a burst of
// n = coalesceAt+8 stanzas, which turns Nagle's algorithm on.
func burstNagle(t *testing.T, cfg Config) (*fakeServer, *recorder, *noDelayConn, *State, *client, *conn) {
	t.Helper()
	const n = coalesceAt + 8
	if cfg.Window == 0 {
		cfg.Window = n + 8
	}
	srv, rec, nd, st, c := coalesceSession(t, cfg)
	cn := holdRequest(t, srv, st, c)
	for i := 1; i <= n; i++ {
		sendMsg(t, st, c.sess, fmt.Sprintf("b%d", i))
	}
	if nd.noDelayNow(t) {
		t.Fatal("a burst did not turn Nagle's algorithm on")
	}
	return srv, rec, nd, st, c, cn
}

// TestCoalesceProgressSockLost: a progress check that cannot read the
// socket (a kernel without the acknowledged count, or a socket closing
// under a current connection) stops looking at it while Nagle's algorithm
// is on; a request booked next must still set TCP_NODELAY again (it once
// called setNoDelay on the dropped socket and panicked) and be written
// with it.
func TestCoalesceProgressSockLost(t *testing.T) {
	srv, rec, nd, st, c, cn := burstNagle(t, Config{})
	st.mu.Lock()
	cn.sock = goneRaw{}
	cn.progressLocked(timeNow())
	lost := cn.sock == nil
	st.mu.Unlock()
	if !lost {
		t.Fatal("the progress check kept a socket it cannot read")
	}
	from := nd.count()
	if _, _, err := st.request(t.Context(), c.sess, cn, true); err != nil {
		t.Fatal(err)
	}
	if !nd.noDelayNow(t) {
		t.Error("Nagle's algorithm still on after a request was booked")
	}
	rs := nd.requests(t, from)
	if len(rs) != 1 || !rs[0].noDelay {
		t.Errorf("the <r/> after the socket was lost: %v, want one written with TCP_NODELAY", rs)
	}
	drainBurst(t, srv, rec, st, c, cn, coalesceAt+8)
	c.close()
}

// TestCoalesceNoDelayLost: once setting TCP_NODELAY fails (the socket is
// gone), Nagle's algorithm is off for the State and coalescing ends: no
// later flush uses the socket, and no later burst turns it on.
func TestCoalesceNoDelayLost(t *testing.T) {
	srv, _, _, st, c, cn := burstNagle(t, Config{})
	st.mu.Lock()
	real := cn.nd
	cn.nd = goneRaw{}
	cn.flushLocked()
	if cn.nagle || cn.nd != nil {
		t.Errorf("after a failed flush: nagle %v, socket kept %v", cn.nagle, cn.nd != nil)
	}
	cn.flushLocked()
	cn.coalesceLocked(coalesceAt + 8)
	if cn.nagle {
		t.Error("a burst turned Nagle's algorithm on for a lost socket")
	}
	// Set the real socket back to TCP_NODELAY for the rest of the session.
	cn.nd, cn.nagle = real, true
	cn.flushLocked()
	st.mu.Unlock()
	srv.releaseR()
	c.close()
}

// TestCoalesceReserveWaits: a sender that has to wait in Reserve or
// ReserveAnswers for room in a full queue (MaxUnacked, here with the
// window off) waits for an ack, which needs what Nagle's algorithm holds:
// TCP_NODELAY is set again before it waits.
func TestCoalesceReserveWaits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reserve func(*State, context.Context) (Slot, error)
	}{
		{"Reserve", (*State).Reserve},
		{"ReserveAnswers", func(st *State, ctx context.Context) (Slot, error) { return st.ReserveAnswers(ctx, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, rec, nd, st, c, cn := burstNagle(t, Config{Window: -1, MaxUnacked: coalesceAt + 8})
			ended, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := tc.reserve(st, ended); err == nil {
				t.Fatal("found room in a full queue")
			}
			if !nd.noDelayNow(t) {
				t.Errorf("%s waits for room with Nagle's algorithm on", tc.name)
			}
			drainBurst(t, srv, rec, st, c, cn, coalesceAt+8)
			c.close()
		})
	}
}

// drainBurst requests an ack, answers the held <r/> (the server has read
// the stanzas before them), and expects the burst b1..bn acked.
func drainBurst(t *testing.T, srv *fakeServer, rec *recorder, st *State, c *client, cn *conn, n int) {
	t.Helper()
	if _, _, err := st.request(t.Context(), c.sess, cn, true); err != nil {
		t.Fatal(err)
	}
	srv.releaseR()
	for i := 1; i <= n; i++ {
		if ev := rec.next(t); ev != fmt.Sprintf("acked:b%d", i) {
			t.Fatalf("got %s, want acked:b%d", ev, i)
		}
	}
}

// TestCoalesceNotWhileBooked: a stanza written by another sender between
// the booking of an <r/> (which sets TCP_NODELAY again) and its write
// must not turn Nagle's algorithm back on, or the request would wait
// behind it for the server's delayed acknowledgement.
func TestCoalesceNotWhileBooked(t *testing.T) {
	srv, rec, nd, st, c, cn := burstNagle(t, Config{})
	st.mu.Lock()
	cn.bookLocked(timeNow())
	st.mu.Unlock()
	sendMsg(t, st, c.sess, fmt.Sprintf("b%d", coalesceAt+9))
	if !nd.noDelayNow(t) {
		// Fatal: the <a/> would not count what Nagle holds.
		t.Fatal("a stanza written while an <r/> was booked turned Nagle's algorithm on")
	}
	st.mu.Lock()
	cn.unbookLocked() // as a refused write of the <r/>
	st.mu.Unlock()
	drainBurst(t, srv, rec, st, c, cn, coalesceAt+9)
	c.close()
}

// TestCoalesceNotBeforeEnabled: stanzas written before the server enabled
// stream management are not coalesced, however many: no <r/> would
// follow to send what Nagle's algorithm held, and none ever if the server
// refuses.
func TestCoalesceNotBeforeEnabled(t *testing.T) {
	srv := newFakeServer(t)
	rec := newRecorder()
	var nd *noDelayConn
	lk := noDelayLink(&nd)
	srv.clientWrap = lk.wrap(t)
	srv.holdEnabled = true
	st := New(rec.config(Config{AckDelay: time.Hour, IdleProbe: time.Hour}))
	c := mustDial(t, srv, st, nil)
	const n = coalesceAt + 8
	for i := 1; i <= n; i++ {
		sendMsg(t, st, c.sess, fmt.Sprintf("b%d", i))
	}
	if info := st.Info(); info.Enabled || info.Unacked != n {
		t.Fatalf("before <enabled/>: %+v", info)
	}
	nd.checkNoDelay(t, n, "before <enabled/>")
	srv.releaseEnabled()
	rec.ackedBurst(t, n)
	c.close()
}

// TestCoalesceFailedFlushes: a <failed/> that ends stream management while
// Nagle's algorithm is on sets TCP_NODELAY again: no <r/> follows on the
// connection to do it, and everything written after would be held. (Only
// the answer to <enable/> ends it, and nothing is coalesced before that
// answer: the test takes the <failed/> for one, to keep the guard.)
func TestCoalesceFailedFlushes(t *testing.T) {
	_, _, nd, st, c, cn := burstNagle(t, Config{})
	st.mu.Lock()
	cn.enabling = true // as if it answered <enable/>
	st.mu.Unlock()
	d := xml.NewDecoder(strings.NewReader(`<failed xmlns='urn:xmpp:sm:3'/>`))
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	start := tok.(xml.StartElement)
	cn.handleFailed(d, &start) // as the reading goroutine does
	if !nd.noDelayNow(t) {
		t.Error("Nagle's algorithm still on after <failed/>")
	}
	c.close()
}

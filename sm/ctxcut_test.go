package sm

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/wirerule"
	"github.com/xmpptrack/xmpptrack/internal/wire"
)

// TestContextEndsDuringRequest: Start's context ends while the ack
// requester is stuck writing an <r/> to a server that stopped reading.
// The write is cut by closing the connection, so Serve returns and the
// client reconnects. Handed to mellium, the context's end would set the
// connection's write deadline instead: the <r/> fails half-written (here
// unwritten), the session's writer keeps that error for every later write,
// and the connection stays open with Serve still reading, a stream nobody
// can write on.
func TestContextEndsDuringRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		if err := st.WaitEnabled(t.Context()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the server waits in a read
		c.sc.conn.freeze()
		// The read under way takes this message; the <r/> the idle rule
		// sends right after it finds nobody reading.
		sendMsg(t, st, c.sess, "m1")
		synctest.Wait()
		st.mu.Lock()
		requested := st.conn.rSent
		st.mu.Unlock()
		if requested != 1 {
			t.Fatalf("%d <r/> booked, want 1 (blocked in its write)", requested)
		}
		c.cancel()
		synctest.Wait()
		select {
		case <-c.served:
		default:
			t.Fatal("Start's context ended during the <r/> write, and the connection stayed open")
		}
		if _, err := wire.Write(context.Background(), c.sess, msgReader("m2")); err == nil {
			t.Error("a write after the cut succeeded")
		}
		c.waitServed()
	})
}

// TestContextEndsWhileIdle: Start's context ending while the requester
// writes nothing touches no one's write: the stream stays usable.
func TestContextEndsWhileIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		if err := st.WaitEnabled(t.Context()); err != nil {
			t.Fatal(err)
		}
		sendMsg(t, st, c.sess, "m1")
		synctest.Wait()
		c.cancel()
		synctest.Wait()
		if _, err := wire.Write(context.Background(), c.sess, msgReader("m2")); err != nil {
			t.Fatalf("a write after the requester's context ended: %v", err)
		}
		synctest.Wait()
		if ids := srv.ids(); strings.Join(ids, ",") != "m1,m2" {
			t.Errorf("server got %v, want [m1 m2]", ids)
		}
		c.close()
	})
}

// TestNoContextToMellium guards the rule the tests above check in action:
// this package never hands mellium a context. Every write goes through
// internal/wire, whose writes a context's end cuts by closing the
// connection, never by a write deadline that mellium may set after the
// write returned, under another goroutine's write.
func TestNoContextToMellium(t *testing.T) {
	wirerule.Check(t, wirerule.SessionWriters, func(recv string) bool {
		return strings.HasPrefix(recv, "xml.")
	})
}

// TestRequestAfterStreamClosed: the requester's turn to send an <r/>
// comes after the application closed the stream (</stream:stream>
// written, the server's answer not in yet). Nothing can be written on a
// closed stream, so nothing was: the connection is left to the closing
// handshake, not cut, and Serve goes on reading until the server's end.
func TestRequestAfterStreamClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		if err := st.WaitEnabled(t.Context()); err != nil {
			t.Fatal(err)
		}
		sendMsg(t, st, c.sess, "m1") // the idle rule: an <r/> at once, unanswered
		synctest.Wait()
		sendMsg(t, st, c.sess, "m2") // covered by the time rule, AckDelay later
		synctest.Wait()
		c.sc.conn.freeze() // the server's answer to the close never comes
		if err := c.sess.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * DefaultAckDelay) // fake time: the requester's turn
		synctest.Wait()
		st.mu.Lock()
		requested := st.conn.rSent
		st.mu.Unlock()
		if requested != 1 {
			t.Fatalf("%d <r/> booked, want 1 (the second, refused after the close, is not awaited)", requested)
		}
		select {
		case <-c.served:
			t.Fatalf("the connection was cut during the closing handshake: Serve returned %v", c.serveEr)
		default:
		}
		c.waitServed()
	})
}

// TestRefusedRequestNoFalseRTT: with nothing outstanding, the requester's
// probe comes after the application closed the stream, and is refused.
// The server's <a/> that arrives afterwards (unsolicited: a final ack
// before it closes its side) answers no <r/> of this connection, so it
// must not be taken for the refused probe's answer and fold a false
// round trip of the idle time into the smoothed RTT, which scales every
// later connection's ack timeout.
func TestRefusedRequestNoFalseRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.rtt = 100 * time.Millisecond
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		if err := st.WaitEnabled(t.Context()); err != nil {
			t.Fatal(err)
		}
		sendMsg(t, st, c.sess, "m1") // the idle rule: an <r/> at once
		time.Sleep(2 * srv.rtt)      // fake time: its answer is in
		synctest.Wait()
		rtt := st.Info().RTT
		if rtt != srv.rtt {
			t.Fatalf("RTT %v after the first answer, want %v", rtt, srv.rtt)
		}
		// The server never sees the client's closing tag, so it does not
		// close its side, but what it writes still arrives.
		c.sc.conn.deafen()
		if err := c.sess.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultIdleProbe + time.Second) // fake time: the probe's turn, refused
		synctest.Wait()
		st.mu.Lock()
		sent, recv, rAt, rWait := st.conn.rSent, st.conn.aRecv, st.conn.rAt, st.conn.rWait
		st.mu.Unlock()
		if sent != 1 || recv != 1 || rAt != 0 || rWait != 0 {
			t.Errorf("after the refused probe: rSent %d aRecv %d rAt %d rWait %d, want 1 1 0 0", sent, recv, rAt, rWait)
		}
		c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
		synctest.Wait()
		if got := st.Info().RTT; got != rtt {
			t.Errorf("RTT %v after an unsolicited <a/>, want %v unchanged", got, rtt)
		}
		select {
		case <-c.served:
			t.Fatalf("the connection was cut during the closing handshake: Serve returned %v", c.serveEr)
		default:
		}
		c.sc.conn.Close()
		c.waitServed()
	})
}

// TestUnbookKeepsAckCount: an unsolicited <a/> read between the booking of
// an <r/> and the refusal of its write was counted against it; taking the
// booking back leaves aRecv at most rSent and nothing awaited.
func TestUnbookKeepsAckCount(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		sent, recv              uint64
		wantSent, wantRecv      uint64
		wantWaiting, wantSample bool
	}{
		{"unsolicited ack in between", 2, 2, 1, 1, false, false},
		{"answer to an earlier request in between", 2, 1, 1, 1, false, false},
		{"earlier request still outstanding", 2, 0, 1, 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &conn{rSent: tc.sent, rOut: tc.sent - 1, aRecv: tc.recv, rAt: 5, rWait: 7}
			c.unbookLocked()
			if c.rSent != tc.wantSent || c.aRecv != tc.wantRecv {
				t.Errorf("rSent %d aRecv %d, want %d %d", c.rSent, c.aRecv, tc.wantSent, tc.wantRecv)
			}
			if (c.rWait != 0) != tc.wantWaiting || (c.rAt != 0) != tc.wantSample {
				t.Errorf("rWait %d rAt %d, want waiting %v, sample %v", c.rWait, c.rAt, tc.wantWaiting, tc.wantSample)
			}
		})
	}
}

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

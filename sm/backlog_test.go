package sm

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp"
)

// A client slower to read the server's output than the ack bound: the
// server's answer to our <r/> waits behind a backlog it wrote first. The
// stanzas read meanwhile are progress (see deadlineLocked), up to the read
// cap, stuckWriteFactor times AckTimeout.

const (
	backlogAck  = time.Second          // AckTimeout of these tests
	backlogRead = 5 * time.Millisecond // the slow reader's time per message
	backlogN    = 2000                 // 10 s of reading: ten ack bounds, under the cap (24 s)
)

// slowReader is a handler that takes backlogRead per message (in a
// synctest bubble, virtual time) and records their ids.
type slowReader struct {
	mu  sync.Mutex
	ids []string
}

func (r *slowReader) handler() xmpp.Handler {
	return xmpp.HandlerFunc(func(_ xmlstreamTRE, start *xmlStart) error {
		if start.Name.Local != "message" {
			return nil
		}
		time.Sleep(backlogRead)
		r.mu.Lock()
		r.ids = append(r.ids, attrOf(start, "id"))
		r.mu.Unlock()
		return nil
	})
}

func (r *slowReader) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, id := range r.ids {
		if strings.HasPrefix(id, prefix) {
			n++
		}
	}
	return n
}

// sendBacklog has the server send n messages, with ids prefix0 to
// prefix(n-1), each counted and kept for re-sending as a server does.
func (sc *srvConn) sendBacklog(prefix string, n int) {
	for i := range n {
		sc.send(fmt.Sprintf(`<message from='peer@example.org/pc' id='%s%d' type='chat'><body>hi</body></message>`, prefix, i))
	}
}

// servedYet reports whether the client's Serve returned.
func (c *client) servedYet() bool {
	select {
	case <-c.served:
		return true
	default:
		return false
	}
}

// TestSlowReaderBacklogAlive: the server writes a backlog that the client
// takes ten ack bounds to read ahead of its answer to our <r/>. The
// connection is not taken for dead: the <a/> arrives after the backlog,
// and the message it covers is acknowledged on the same connection.
// (Before inbound stanzas counted as progress, it was dropped one ack
// bound after the <r/>, 1 s into the backlog.)
func TestSlowReaderBacklogAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: backlogAck}))
		rd := &slowReader{}
		c := mustDial(t, srv, st, rd.handler())
		synctest.Wait()
		holdAcks(srv)
		sendMsg(t, st, c.sess, "m0") // its <r/> goes at once (idle link)
		synctest.Wait()
		start := time.Now()
		c.sc.sendBacklog("b", backlogN)
		srv.releaseR() // the answer, behind the backlog
		if !ackedOrEnded(t, rec, c, "m0") {
			t.Fatalf("the connection was dropped after %v, having read %d of %d: %v",
				time.Since(start), rd.count("b"), backlogN, c.waitServed())
		}
		if d, want := time.Since(start), backlogN*backlogRead; d < want {
			t.Errorf("acknowledged after %v, before the backlog could be read (%v)", d, want)
		}
		rd.checkAllRead(t, c)
	})
}

// ackedOrEnded waits for the acknowledgement of id (true) or the end of
// c's Serve (false).
func ackedOrEnded(t *testing.T, rec *recorder, c *client, id string) bool {
	t.Helper()
	select {
	case ev := <-rec.ch:
		if ev != "acked:"+id {
			t.Fatalf("got %s, want acked:%s", ev, id)
		}
		return true
	case <-c.served:
		return false
	}
}

// checkAllRead checks that c is still up and that the whole backlog was
// read, and closes c.
func (r *slowReader) checkAllRead(t *testing.T, c *client) {
	t.Helper()
	if c.servedYet() {
		t.Fatalf("the connection ended: %v", c.serveEr)
	}
	if n := r.count("b"); n != backlogN {
		t.Errorf("read %d of the %d backlog messages", n, backlogN)
	}
	c.close()
}

// TestBacklogAfterResumption: the loop. A connection is lost while the
// server holds a backlog for the client; on resumption the server writes
// it again ahead of its answer to the <r/> of the next message sent. A
// resumed connection that dies of the ack bound before any <a/> is a
// failed resumption (see "Failed resumptions"), so without inbound
// progress the client dropped the resumed stream after reading one ack
// bound's worth of the backlog, bound a new session, and the rest of the
// backlog was the server's business (this script drops it, as a server
// without offline storage does; one with it delivers it on the new
// session, ahead of the answer to the next <r/> again). With the fix the
// resumed connection reads the whole backlog, gets its <a/>, and stays.
func TestBacklogAfterResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: backlogAck}))
		rd := &slowReader{}
		c := mustDial(t, srv, st, rd.handler())
		synctest.Wait()
		// The server queues a backlog the client never gets to read.
		c.sc.conn.freeze()
		c.sc.sendBacklog("b", backlogN)
		c.drop()
		for conn := 2; ; conn++ {
			if conn > 4 {
				t.Fatalf("%d connections, the backlog still unread (%d of %d)", conn-1, rd.count("b"), backlogN)
			}
			c = mustDial(t, srv, st, rd.handler())
			if !st.Resumed() {
				t.Fatalf("connection %d bound a new session: the resumed one was dropped, having read %d of %d",
					conn, rd.count("b"), backlogN)
			}
			if conn == 2 {
				sendMsg(t, st, c.sess, "k") // its <r/> goes at once; the <a/> comes behind the backlog
			}
			if ackedOrEnded(t, rec, c, "k") {
				break
			}
			t.Logf("connection %d ended: %v", conn, c.waitServed())
		}
		rd.checkAllRead(t, c)
	})
}

// TestStreamingNeverAnswers: a server that keeps sending stanzas and
// never answers our <r/>. A client that reads them as they come (nothing
// left unread: it is not behind a backlog) finds it an ack bound after the
// request was written, whether the stanzas come one by one or in bursts
// that leave bytes unread between its reads for no time at all (before,
// each stanza put the end off, and it was found only at the read cap, 24
// bounds). A client kept behind by a stream faster than it reads
// finds it at the read cap, stuckWriteFactor times AckTimeout after the
// request. Where the client cannot tell what is unread, every stanza is
// progress, as before: found at the read cap, or an ack bound after the
// last stanza once the server goes quiet. Whitespace keepalives are no
// progress either way.
func TestStreamingNeverAnswers(t *testing.T) {
	const cap = stuckWriteFactor * backlogAck
	for _, tc := range []struct {
		name   string
		opaque bool          // the client cannot tell unread bytes
		every  time.Duration // between the server's sends
		burst  int           // stanzas per send; 0: a whitespace keepalive
		read   time.Duration // the client's time per stanza
		small  bool          // the client reads a few bytes at a time: behind within each burst
		quiet  time.Duration // the server stops sending after it; 0: never
		want   time.Duration // when the connection is found dead
		bound  time.Duration // the AckTimeoutError's Bound
	}{
		{name: "caught up", every: 100 * time.Millisecond, burst: 1, want: backlogAck, bound: backlogAck},
		{name: "caught up, bursts", every: 100 * time.Millisecond, burst: 5, small: true, want: backlogAck, bound: backlogAck},
		{name: "behind", every: 10 * time.Millisecond, burst: 1, read: 20 * time.Millisecond, want: cap, bound: cap},
		{name: "keepalives", every: 100 * time.Millisecond, want: backlogAck, bound: backlogAck},
		{name: "keepalives, cannot tell", opaque: true, every: 100 * time.Millisecond, want: backlogAck, bound: backlogAck},
		{name: "cannot tell", opaque: true, every: 100 * time.Millisecond, burst: 1, want: cap, bound: cap},
		{name: "cannot tell, quiet", opaque: true, every: 100 * time.Millisecond, burst: 1, quiet: 7 * time.Second,
			want: 7*time.Second + backlogAck, bound: backlogAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				srv.opaque = tc.opaque
				if tc.small {
					srv.readMax = 64
				}
				st := New(Config{AckTimeout: backlogAck})
				var h xmpp.Handler
				if tc.read > 0 {
					h = xmpp.HandlerFunc(func(xmlstreamTRE, *xmlStart) error {
						time.Sleep(tc.read)
						return nil
					})
				}
				c := mustDial(t, srv, st, h)
				synctest.Wait()
				holdAcks(srv) // never released
				start := time.Now()
				sendMsg(t, st, c.sess, "m0")
				go func() {
					for i := 0; ; i++ {
						select {
						case <-c.served:
							return
						case <-time.After(tc.every):
						}
						if tc.quiet > 0 && time.Since(start) > tc.quiet || time.Since(start) > 2*cap {
							return // quiet, or the cap is long past: the test fails, not hangs
						}
						if tc.burst == 0 {
							c.sc.raw(" ")
						}
						c.sc.sendBacklog(fmt.Sprint("s", i, "-"), tc.burst)
					}
				}()
				err := c.waitServed()
				var ae *AckTimeoutError
				if !errors.As(err, &ae) {
					t.Fatalf("Serve: %v, want an *AckTimeoutError", err)
				}
				// Serve returns once the handler is through what was read
				// before the deadline expired (at once without a slow one).
				if d := time.Since(start); ae.Bound != tc.bound || ae.Waited != tc.want || d < tc.want || tc.read == 0 && d != tc.want {
					t.Errorf("dead after %v, error %v; want %v, bound %v", d, ae, tc.want, tc.bound)
				}
			})
		})
	}
}

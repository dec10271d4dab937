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

// TestStreamingNeverAnswers: a server that streams stanzas without pause
// and never answers our <r/> is dead at the read cap, stuckWriteFactor
// times AckTimeout after the request was written; one that goes quiet
// after its stanzas, an ack bound after the last one.
func TestStreamingNeverAnswers(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		t.Run(map[bool]string{false: "streaming", true: "quiet"}[quiet], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				st := New(Config{AckTimeout: backlogAck})
				c := mustDial(t, srv, st, nil)
				synctest.Wait()
				holdAcks(srv) // never released
				start := time.Now()
				sendMsg(t, st, c.sess, "m0")
				const every = 100 * time.Millisecond
				const quietAfter = 7 * time.Second
				go func() {
					for i := 0; ; i++ {
						select {
						case <-c.served:
							return
						case <-time.After(every):
						}
						if quiet && time.Since(start) > quietAfter || time.Since(start) > 2*stuckWriteFactor*backlogAck {
							return // quiet, or the cap is long past: the test fails, not hangs
						}
						c.sc.sendBacklog(fmt.Sprint("s", i, "-"), 1)
					}
				}()
				err := c.waitServed()
				var ae *AckTimeoutError
				if !errors.As(err, &ae) {
					t.Fatalf("Serve: %v, want an *AckTimeoutError", err)
				}
				d := time.Since(start)
				want, bound := stuckWriteFactor*backlogAck, stuckWriteFactor*backlogAck
				if quiet {
					// The last stanza came at 7 s; the bound is the ack
					// bound (no round trip measured: AckTimeout).
					want, bound = quietAfter+backlogAck, backlogAck
				}
				if d != want || ae.Bound != bound || ae.Waited != want {
					t.Errorf("dead after %v, error %v; want %v, bound %v", d, ae, want, bound)
				}
			})
		})
	}
}

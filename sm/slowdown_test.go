package sm

import (
	"fmt"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// A link slower than the server, not the reader, is the bottleneck: the
// server's backlog reaches the client no faster than it reads it, and the
// answer to our <r/> waits behind it, in the server's queue or on the
// link. Nothing in our socket shows the backlog, so only the stanzas read
// tell that the server works toward the answer (review rv-dead B1: a rule
// that excused only the time with bytes unread in our socket cut these
// connections, and a resumed one became a failed resumption).

// TestSlowLinkBacklogAlive: the server sends a backlog of backlogN stanzas
// one every backlogRead (ten ack bounds in all) ahead of its answer; the
// connection stays, at the start of a connection and mid-session (after an
// <a/> on it).
func TestSlowLinkBacklogAlive(t *testing.T) {
	for _, mid := range []bool{false, true} {
		t.Run(map[bool]string{false: "before any ack", true: "mid-session"}[mid], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv, rec, st, c := backlogDial(t)
				if mid {
					sendMsg(t, st, c.sess, "m")
					if ev := rec.next(t); ev != "acked:m" {
						t.Fatalf("got %s", ev)
					}
				}
				holdAcks(srv)
				sendMsg(t, st, c.sess, "m0")
				synctest.Wait()
				start := time.Now()
				go func() {
					for i := range backlogN {
						select {
						case <-c.served:
							return
						case <-time.After(backlogRead):
						}
						c.sc.send(fmt.Sprintf(`<message from='peer@example.org/pc' id='b%d' type='chat'><body>hi</body></message>`, i))
					}
					srv.releaseR()
				}()
				if !ackedOrEnded(t, rec, c, "m0") {
					t.Fatalf("the connection was dropped after %v: %v", time.Since(start), c.waitServed())
				}
				c.close()
			})
		})
	}
}

// backlogDial connects a State with an AckTimeout of backlogAck, in a
// synctest bubble, and waits until the connection is idle.
func backlogDial(t *testing.T) (*fakeServer, *recorder, *State, *client) {
	t.Helper()
	srv := newFakeServer(t)
	rec := newRecorder()
	st := New(rec.config(Config{AckTimeout: backlogAck}))
	c := mustDial(t, srv, st, nil)
	synctest.Wait()
	return srv, rec, st, c
}

// slowLinkIn is the client's end of a link that brings at most 100 bytes
// per 5 ms. It tells no byte unread (unreadIn, the look of 2526a1e's
// harness): what is on the link is in no socket of ours.
type slowLinkIn struct{ net.Conn }

func (l *slowLinkIn) unreadIn() (int, bool) { return 0, true }

func (l *slowLinkIn) Read(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	if len(p) > 100 {
		p = p[:100]
	}
	return l.Conn.Read(p)
}

// TestSlowLinkResumption: TestBacklogAfterResumption with the link as the
// bottleneck: the resumed connection reads the server's re-sent backlog
// as the link brings it, gets its <a/> and stays resumed.
func TestSlowLinkResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv, rec, st, c := backlogDial(t)
		c.sc.conn.freeze()
		c.sc.sendBacklog("b", backlogN)
		c.drop()
		srv.clientWrap = func(c net.Conn) net.Conn { return &slowLinkIn{c} }
		for conn := 2; ; conn++ {
			if conn > 4 {
				t.Fatalf("%d connections", conn-1)
			}
			c = mustDial(t, srv, st, nil)
			if !st.Resumed() {
				t.Fatalf("connection %d bound a new session: the resumed one was dropped", conn)
			}
			if conn == 2 {
				sendMsg(t, st, c.sess, "k")
			}
			if ackedOrEnded(t, rec, c, "k") {
				break
			}
			t.Logf("connection %d ended: %v", conn, c.waitServed())
		}
		c.close()
	})
}

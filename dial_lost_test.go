package xmpptrack

import (
	"errors"
	"testing"
	"time"
)

// pauseDial returns a Config.beforeWait hook that waits until the first
// connection was handed out (publish), then reports the client on paused
// and waits for release, each wait bounded by testWait.
func pauseDial(t *testing.T, paused chan<- *Client, release <-chan struct{}) func(*Client) {
	return func(c *Client) {
		c.mu.Lock()
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-time.After(testWait):
			t.Error("the first connection was not handed out")
		}
		paused <- c
		select {
		case <-release:
		case <-time.After(testWait):
			t.Error("the test did not release Dial")
		}
	}
}

// pausedClient waits for the hook of pauseDial.
func pausedClient(t *testing.T, paused <-chan *Client) *Client {
	t.Helper()
	select {
	case c := <-paused:
		return c
	case <-time.After(testWait):
		t.Fatal("Dial never got to wait for its first connection")
		return nil
	}
}

// TestDialFirstConnectionLostAfterPublish: the first connection is handed
// out to senders, then lost before Dial's goroutine looks, and the server
// takes no new connection meanwhile. Dial returns the client all the same:
// the loss is a later one, handled by reconnecting, and the client sends
// once the server lets it in. Before, Dial waited for the current
// connection's <enabled/>, then for a live session, so under load (its
// goroutine running late) it waited for the next connection and failed when
// its context ended (TestArchiveHeldNumbersVoidedBeforeWrites, with
// reconnections held, timed out so once at load 17). Fails without the fix
// after testWait.
func TestDialFirstConnectionLostAfterPublish(t *testing.T) {
	srv := newPeerServer(t)
	paused, release := make(chan *Client, 1), make(chan struct{})
	dialed := dialAsync(t, srv, Config{beforeWait: pauseDial(t, paused, release)})
	pc := srv.next(t)
	srv.waitAccepted(t) // the first connection's
	pausedClient(t, paused)
	hold := make(chan struct{})
	srv.set(func(srv *peerServer) { srv.hold = hold })
	pc.conn.Close()
	srv.waitAccepted(t) // the reconnection: the loss was taken in
	close(release)
	c := <-dialed
	close(hold)
	if c == nil {
		t.Fatal("Dial failed")
	}
	defer c.Close()
	pc = srv.next(t)
	if !pc.resumed {
		t.Error("the reconnection did not resume the stream")
	}
	sendAcked(t, c, Message{To: bob})
	if st := c.Stats(); st.Reconnections != 1 {
		t.Errorf("Stats() = %+v, want 1 reconnection", st)
	}
}

// TestDialFirstConnectionLostThenAuthFails: the first connection is handed
// out, then lost, and the reconnection fails for good (not-authorized)
// before Dial's goroutine looks. Dial returns the client, already stopped,
// and Done and Err report the failure: its own login succeeded, and its
// outcome does not depend on when it looked.
func TestDialFirstConnectionLostThenAuthFails(t *testing.T) {
	srv := newPeerServer(t)
	paused, release := make(chan *Client, 1), make(chan struct{})
	dialed := dialAsync(t, srv, Config{beforeWait: pauseDial(t, paused, release)})
	pc := srv.next(t)
	cl := pausedClient(t, paused)
	srv.set(func(srv *peerServer) { srv.authFail = []string{"not-authorized"} })
	pc.conn.Close()
	select {
	case <-cl.Done():
	case <-time.After(testWait):
		t.Fatal("the client did not stop on the failed login")
	}
	close(release)
	c := <-dialed
	if c == nil {
		t.Fatal("Dial failed")
	}
	defer c.Close()
	if err := c.Err(); !errors.Is(err, ErrAuth) {
		t.Errorf("Err() = %v, want ErrAuth", err)
	}
}

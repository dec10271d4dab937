package xmpptrack

import "testing"

// TestDialFirstConnectionLostAfterPublish: the first connection is handed
// out to senders, then lost before Dial's goroutine looks, and the server
// takes no new connection meanwhile. Dial returns the client all the same:
// the loss is a later one, handled by reconnecting. Before, Dial waited for
// a live session, so under load (its goroutine running late) it waited for
// the next connection and failed when its context ended
// (TestArchiveHeldNumbersVoidedBeforeWrites, with reconnections held, timed
// out so once at load 17). Fails without the fix after testWait.
func TestDialFirstConnectionLostAfterPublish(t *testing.T) {
	srv := newPeerServer(t)
	paused, release := make(chan struct{}), make(chan struct{})
	cfg := Config{afterEnabled: func(c *Client) {
		// Wait until the connection was handed out (publish).
		c.mu.Lock()
		up := c.up
		c.mu.Unlock()
		<-up
		close(paused)
		<-release
	}}
	dialed := dialAsync(t, srv, cfg)
	pc := srv.next(t)
	srv.waitAccepted(t) // the first connection's
	<-paused
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
	c.Close()
}

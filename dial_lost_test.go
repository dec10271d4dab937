package xmpptrack

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// pauseDial returns a Config.beforeWait hook that waits (at most testWait)
// until the first connection was handed out (publish), then pauses as
// pauseBeforeWait's does.
func pauseDial(t *testing.T) (hook func(*Client), paused chan *Client, release func()) {
	pause, paused, release := pauseBeforeWait(t)
	return func(c *Client) {
		c.mu.Lock()
		up := c.up
		c.mu.Unlock()
		select {
		case <-up:
		case <-time.After(testWait):
			t.Error("the first connection was not handed out")
		}
		pause(c)
	}, paused, release
}

// pausedClient waits for the hook of pauseDial or pauseBeforeWait.
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
	hook, paused, release := pauseDial(t)
	dialed := dialAsync(t, srv, Config{beforeWait: hook})
	pc := srv.next(t)
	srv.waitAccepted(t) // the first connection's
	pausedClient(t, paused)
	hold := make(chan struct{})
	srv.set(func(srv *peerServer) { srv.hold = hold })
	pc.conn.Close()
	srv.waitAccepted(t) // the reconnection: the loss was taken in
	release()
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
	hook, paused, release := pauseDial(t)
	dialed := dialAsync(t, srv, Config{beforeWait: hook})
	pc := srv.next(t)
	cl := pausedClient(t, paused)
	srv.set(func(srv *peerServer) { srv.authFail = []string{"not-authorized"} })
	pc.conn.Close()
	select {
	case <-cl.Done():
	case <-time.After(testWait):
		t.Fatal("the client did not stop on the failed login")
	}
	release()
	c := <-dialed
	if c == nil {
		t.Fatal("Dial failed")
	}
	defer c.Close()
	if err := c.Err(); !errors.Is(err, ErrAuth) {
		t.Errorf("Err() = %v, want ErrAuth", err)
	}
}

// pauseBeforeWait returns a Config.beforeWait hook that reports the client
// on paused and waits until release is called (at the latest by the test's
// cleanup).
func pauseBeforeWait(t *testing.T) (hook func(*Client), paused chan *Client, release func()) {
	paused = make(chan *Client, 1)
	rel := make(chan struct{})
	release = sync.OnceFunc(func() { close(rel) })
	t.Cleanup(release)
	return func(c *Client) {
		paused <- c
		<-rel
	}, paused, release
}

// dialStalledAtEnable dials srv, whose first connection leaves <enable/>
// unanswered, with Dial paused before it waits (pauseBeforeWait): it
// returns the client, the first connection, Dial's result and the release.
func dialStalledAtEnable(t *testing.T, srv *peerServer) (*Client, *peerConn, <-chan dialOutcome, func()) {
	t.Helper()
	srv.set(func(srv *peerServer) { srv.stall = "enable" })
	hook, paused, release := pauseBeforeWait(t)
	dialed := dialResult(t, srv, Config{beforeWait: hook})
	pc := srv.next(t)
	<-srv.stalled // the first connection's <enable/> is unanswered
	return pausedClient(t, paused), pc, dialed, release
}

// wantNoClient fails the test if Dial returned a client (closing it).
func wantNoClient(t *testing.T, r dialOutcome, why string) {
	t.Helper()
	if r.c != nil {
		r.c.Close()
		t.Fatalf("Dial returned a client %s", why)
	}
}

// TestDialFirstEndsThenReconnectionUp: the first connection ends before its
// <enabled/> (it was never handed out) and a reconnection is handed out
// before Dial's goroutine looks. Dial reports the first connection's end,
// as when it looks early (TestDialConnectionEnds). Before, it counted the
// reconnection's hand-out as its own and returned a client.
func TestDialFirstEndsThenReconnectionUp(t *testing.T) {
	srv := newPeerServer(t)
	cl, pc, dialed, release := dialStalledAtEnable(t, srv)
	srv.set(func(srv *peerServer) { srv.stall = "" })
	pc.conn.Close()
	srv.next(t) // the reconnection logs in
	cl.mu.Lock()
	up := cl.up // not replaced: the first connection was never handed out
	cl.mu.Unlock()
	select {
	case <-up:
	case <-time.After(testWait):
		t.Fatal("the reconnection was not handed out")
	}
	release()
	r := <-dialed
	wantNoClient(t, r, "though its first connection ended before it was handed out")
	if !errors.Is(r.err, sm.ErrConnEnded) || !errors.Is(r.err, ErrConnect) {
		t.Errorf("Dial: %v, want ErrConnEnded and ErrConnect", r.err)
	}
}

// TestDialFirstEndsThenReconnectionFails: the first connection ends before
// its <enabled/>, and the reconnection fails for good (not-authorized)
// before Dial's goroutine looks. Dial reports the first connection's end,
// not the reconnection's failure. Before, its select had both ready and
// picked one at random (run with -count 20 to see it fail without the fix).
func TestDialFirstEndsThenReconnectionFails(t *testing.T) {
	srv := newPeerServer(t)
	cl, pc, dialed, release := dialStalledAtEnable(t, srv)
	srv.set(func(srv *peerServer) {
		srv.stall = ""
		srv.authFail = []string{"not-authorized"}
	})
	pc.conn.Close()
	select {
	case <-cl.Done():
	case <-time.After(testWait):
		t.Fatal("the client did not stop on the failed login")
	}
	release()
	r := <-dialed
	wantNoClient(t, r, "")
	if !errors.Is(r.err, sm.ErrConnEnded) || errors.Is(r.err, ErrClientClosed) {
		t.Errorf("Dial: %v, want the first connection's end (ErrConnEnded), not the reconnection's failure", r.err)
	}
}

// TestDialFirstStreamEndsBeforeEnabled: the server ends the stream cleanly
// (</stream:stream>) before <enabled/>, so the first connection's Serve
// returns nil. Dial's error names the end of the input instead of a nil
// cause ("%!w(<nil>)" before).
func TestDialFirstStreamEndsBeforeEnabled(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.stall = "enable" })
	dialed := dialResult(t, srv, Config{})
	pc := srv.next(t)
	<-srv.stalled
	srv.set(func(srv *peerServer) { srv.hold = make(chan struct{}) })
	pc.send(`</stream:stream>`)
	r := <-dialed
	wantNoClient(t, r, "")
	if !errors.Is(r.err, sm.ErrConnEnded) || !errors.Is(r.err, io.EOF) || strings.Contains(r.err.Error(), "%!") {
		t.Errorf("Dial: %v, want ErrConnEnded wrapping io.EOF", r.err)
	}
}

// TestStoreDialFailKeepsPending: a Dial that cannot connect (the server
// down at a restart) leaves the stored unsettled messages pending for the
// next Dial; it settled them CLOSED in the store, never to be sent again
// (review rv-core 1).
func TestStoreDialFailKeepsPending(t *testing.T) {
	st := openStore(t)
	owner := store.Instance{Account: testJID.Bare().String(), Resource: testJID.Resourcepart()}
	b := &store.Batch{Messages: []store.Message{
		{ID: "open", Owner: owner, To: bob.String(), Raw: []byte(`<message id="open"/>`), Deadline: time.Now().Add(time.Hour)},
	}}
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens: the connection is refused
	c, err := Dial(waitCtx(t), testJID, peerPassword, &Config{Store: st, Addr: addr, DirectTLS: true})
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with nobody listening")
	}
	rec, err := st.Message(context.Background(), "open")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Settled || rec.State != tracking.InTransit {
		t.Errorf("after a failed Dial the stored message is %v (settled %v), want IN_TRANSIT, pending", rec.State, rec.Settled)
	}
}

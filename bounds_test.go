package xmpptrack

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
)

// Bounds of the blocking entry points against a server that stalls. The
// waits below (testWait) only keep a broken client from hanging the test;
// what is asserted is that the call returns, with the right error.

// returns runs f and fails the test if it has not returned within testWait.
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(testWait):
		t.Fatalf("%s did not return", what)
	}
}

// TestDialStalledEnable: a server that never answers <enable/> does not
// hold Dial past its context, nor the Close that Dial does on its way out
// (Serve is then blocked in a read that no deadline bounds).
func TestDialStalledEnable(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.stall = "enable" })
	cfg := Config{Addr: srv.l.Addr().String(), DirectTLS: true, TLSConfig: &tls.Config{RootCAs: testRoots(t)}}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var err error
	returns(t, "Dial", func() {
		var c *Client
		if c, err = Dial(ctx, testJID, peerPassword, &cfg); c != nil {
			c.Close()
		}
	})
	t.Logf("error: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrConnect) {
		t.Errorf("error does not match context.DeadlineExceeded and ErrConnect")
	}
}

// TestDialConnectionEnds: a connection that ends before <enabled/> is a
// connection failure with its cause, not a bare sm.ErrConnEnded.
func TestDialConnectionEnds(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.stall = "hangup" })
	cfg := Config{Addr: srv.l.Addr().String(), DirectTLS: true, TLSConfig: &tls.Config{RootCAs: testRoots(t)}}
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	defer cancel()
	c, err := Dial(ctx, testJID, peerPassword, &cfg)
	if c != nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, ErrConnect) || !errors.Is(err, sm.ErrConnEnded) || err == sm.ErrConnEnded {
		t.Errorf("error does not match ErrConnect and sm.ErrConnEnded, or is sm.ErrConnEnded itself")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial waited for its context")
	}
}

// TestCloseStalledReconnection: Close and Shutdown return while a
// reconnection is stuck because the server does not answer <resume/> or
// <enable/>.
func TestCloseStalledReconnection(t *testing.T) {
	for _, stall := range []string{"resume", "enable"} {
		for _, how := range []string{"Close", "Shutdown"} {
			t.Run(stall+"/"+how, func(t *testing.T) {
				srv := newPeerServer(t)
				c := dialPeer(t, srv, Config{})
				pc := srv.next(t)
				srv.set(func(srv *peerServer) {
					srv.stall = stall
					srv.noResume = stall == "enable"
				})
				pc.conn.Close()
				select {
				case <-srv.stalled:
				case <-time.After(testWait):
					t.Fatal("the client did not reconnect")
				}
				returns(t, how, func() {
					if how == "Close" {
						c.Close()
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					c.Shutdown(ctx)
				})
			})
		}
	}
}

// TestSendOnceStalledEnable: SendOnce honours its context when the server
// never answers <enable/>.
func TestSendOnceStalledEnable(t *testing.T) {
	srv := newPeerServer(t)
	srv.set(func(srv *peerServer) { srv.stall = "enable" })
	opts := &OnceOptions{Config: Config{Addr: srv.l.Addr().String(), DirectTLS: true, TLSConfig: &tls.Config{RootCAs: testRoots(t)}}}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	var err error
	returns(t, "SendOnce", func() {
		_, _, err = SendOnce(ctx, testJID, peerPassword, Message{To: testJID, Body: "x"}, opts)
	})
	t.Logf("error: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrConnect) {
		t.Errorf("error does not match context.DeadlineExceeded and ErrConnect")
	}
}

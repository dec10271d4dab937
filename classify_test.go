package xmpptrack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestSendWhileDisconnected: Send classifies a context that ends while the
// client has no connection where it happens, as stanza.ErrDisconnected as
// well as the context's error; one that ends while connected (Send waits for
// a pending-tracker slot) is only the context's error.
func TestSendWhileDisconnected(t *testing.T) {
	bob := jid.MustParse("bob@localhost")
	t.Run("connected", func(t *testing.T) {
		srv := newPeerServer(t)
		c := dialPeer(t, srv, Config{MaxPending: 1})
		if _, err := c.Send(waitCtx(t), Message{To: bob, ID: "m1"}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Send(ctx, Message{To: bob, ID: "m2"}) // waits for m1's slot
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, stanza.ErrDisconnected) {
			t.Errorf("Send = %v, want the context's error alone", err)
		}
	})
	t.Run("disconnected", func(t *testing.T) {
		srv := newPeerServer(t)
		c := dialPeer(t, srv, Config{})
		pc := srv.next(t)
		srv.waitAccepted(t) // Dial's connection: the next one is the reconnection
		hold := make(chan struct{})
		defer close(hold)
		srv.set(func(srv *peerServer) { srv.hold = hold })
		pc.conn.Close()
		srv.waitAccepted(t) // the client is reconnecting, and will wait
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, _, err := c.SendAndWait(ctx, Message{To: bob, ID: "m3"}, tracking.DeliveredToServer)
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, stanza.ErrDisconnected) {
			t.Errorf("SendAndWait = %v, want the context's error and stanza.ErrDisconnected", err)
		}
		_, err = c.Send(ctx, Message{To: bob, ID: "m4"})
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, stanza.ErrDisconnected) {
			t.Errorf("Send = %v, want the context's error and stanza.ErrDisconnected", err)
		}
	})
}

// TestWasDown: the classification of a window or context that ended asks
// whether the connection was down at that moment, not at the moment of
// asking.
func TestWasDown(t *testing.T) {
	srv := newPeerServer(t)
	c := dialPeer(t, srv, Config{})
	pc := srv.next(t)
	before := time.Now()
	if c.wasDown(before) {
		t.Error("down while connected")
	}
	lost := make(chan struct{}, 1)
	c.Observe(Observer{Disconnected: func(error) { lost <- struct{}{} }})
	hold := make(chan struct{})
	srv.set(func(srv *peerServer) { srv.hold = hold })
	pc.conn.Close()
	select {
	case <-lost:
	case <-time.After(testWait):
		t.Fatal("the loss was not reported")
	}
	during := time.Now()
	if !c.wasDown(during) {
		t.Error("not down during the reconnection")
	}
	if c.wasDown(before) {
		t.Error("down before the loss")
	}
	close(hold)
	srv.next(t)
	if _, err := c.Session(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !c.wasDown(during) {
		t.Error("not down during the reconnection, asked after it")
	}
	if c.wasDown(time.Now()) || c.wasDown(before) {
		t.Error("down while connected")
	}
}

// TestEndedWriteError: when ctx ended by the time a write failed, Send's
// error matches ctx's; when the write failed on its own (the connection
// reset, say), it matches stanza.ErrDisconnected too, as Send's doc says
// of errors from the connection; when ctx cut the write, it does not.
func TestEndedWriteError(t *testing.T) {
	reset := errors.New("write: connection reset by peer")
	err := endedWrite(context.DeadlineExceeded, reset)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, stanza.ErrDisconnected) || !errors.Is(err, reset) {
		t.Errorf("ctx ended while the write failed on its own: %v; want ctx's error, stanza.ErrDisconnected and the write's", err)
	}
	cut := fmt.Errorf("wire: %w", context.Canceled)
	err = endedWrite(context.Canceled, cut)
	if err != cut || errors.Is(err, stanza.ErrDisconnected) {
		t.Errorf("ctx cut the write: %v; want the write's error as it is", err)
	}
}

// endedCtx is a context whose Err reports DeadlineExceeded once ended is
// set, and whose Done never closes: nothing can cut a write with it.
type endedCtx struct {
	context.Context
	ended atomic.Bool
}

func (c *endedCtx) Err() error {
	if c.ended.Load() {
		return context.DeadlineExceeded
	}
	return nil
}

// resetConn fails every write once armed, ending ctx at that moment: the
// connection broke under the write while ctx ended.
type resetConn struct {
	net.Conn
	armed *atomic.Bool
	ctx   *endedCtx
}

func (c resetConn) Write(p []byte) (int, error) {
	if c.armed.Load() {
		c.ctx.ended.Store(true)
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	}
	return c.Conn.Write(p)
}

// TestSendEndedWhileWriteFailed: Send's ctx ends while its write fails on
// its own (the connection reset). Its error matches ctx's and
// stanza.ErrDisconnected, and the message is ABORTED (it did not go out).
func TestSendEndedWhileWriteFailed(t *testing.T) {
	srv := newPeerServer(t)
	var armed atomic.Bool
	ctx := &endedCtx{Context: context.Background()}
	c := dialPeer(t, srv, Config{dial: func(dctx context.Context) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", srv.l.Addr().String())
		if err != nil {
			return nil, err
		}
		return resetConn{Conn: conn, armed: &armed, ctx: ctx}, nil
	}})
	srv.next(t)
	armed.Store(true)
	tr, err := c.Send(ctx, Message{To: jid.MustParse("bob@localhost"), ID: "m1"})
	armed.Store(false)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, stanza.ErrDisconnected) {
		t.Fatalf("Send: %v; want the context's error and stanza.ErrDisconnected", err)
	}
	if tr == nil {
		t.Fatal("Send returned no tracker")
	}
	select {
	case <-tr.Done():
	case <-waitCtx(t).Done():
		t.Fatal("the message's tracking did not end")
	}
	if tr.State() != tracking.Aborted {
		t.Errorf("the message ended %s, want ABORTED", tr.State())
	}
}

package xmpptrack

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// asyncConn makes writes asynchronous, like a TCP send buffer, over one
// end of a net.Pipe (which has none), so that TLS runs over a pipe: both
// sides may write at once. Reads and deadlines are the pipe's. Everything
// blocks on channels, so it works in a synctest bubble.
type asyncConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	notify  chan struct{}
	closed  chan struct{}
	once    sync.Once
}

func newAsyncConn(c net.Conn) *asyncConn {
	a := &asyncConn{Conn: c, notify: make(chan struct{}, 1), closed: make(chan struct{})}
	go a.pump()
	return a
}

func (a *asyncConn) Write(p []byte) (int, error) {
	select {
	case <-a.closed:
		return 0, net.ErrClosed
	default:
	}
	a.mu.Lock()
	a.pending = append(a.pending, p...)
	a.mu.Unlock()
	select {
	case a.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (a *asyncConn) pump() {
	for {
		select {
		case <-a.notify:
		case <-a.closed:
			return
		}
		a.mu.Lock()
		b := a.pending
		a.pending = nil
		a.mu.Unlock()
		if _, err := a.Conn.Write(b); err != nil {
			return
		}
	}
}

func (a *asyncConn) Close() error {
	a.once.Do(func() { close(a.closed) })
	return a.Conn.Close()
}

// newPipePeer is newPeerServer over in-memory connections, for tests in a
// synctest bubble: the client reaches it through the returned dial
// (Config.dial).
func newPipePeer(t *testing.T) (*peerServer, func(context.Context) (net.Conn, error)) {
	srv := &peerServer{
		t:        t,
		conns:    make(chan *peerConn, 16),
		accepted: make(chan struct{}, 16),
		closed:   make(chan struct{}),
		stalled:  make(chan struct{}, 16),
		acks:     make(chan uint32, 64),
	}
	t.Cleanup(func() {
		close(srv.closed)
		srv.mu.Lock()
		live := srv.live
		srv.mu.Unlock()
		for _, pc := range live {
			pc.conn.Close()
		}
		srv.wg.Wait()
	})
	dial := func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		client, server := newAsyncConn(a), newAsyncConn(b)
		srv.wg.Go(func() { srv.serve(server) })
		return client, nil
	}
	return srv, dial
}

// TestHoldWiredEndToEnd: the client's connections call its read hook
// (login.Config.BeforeRead → readIdle), so the state changes of stanzas
// read together are held and go to the callbacks when the reader asks
// the network for more; and the end of Serve releases what the last
// stanzas of a connection proved, with no further read. Neither waits for
// the registry's linger tick: no time passes in the bubble.
func TestHoldWiredEndToEnd(t *testing.T) {
	roots := testRoots(t) // the certificate is valid now, not at the bubble's epoch
	now := time.Now()
	synctest.Test(t, func(t *testing.T) {
		srv, dial := newPipePeer(t)
		cfg := Config{
			Addr: "peer", DirectTLS: true, dial: dial,
			TLSConfig:  &tls.Config{RootCAs: roots, Time: func() time.Time { return now }},
			MinBackoff: time.Hour, MaxBackoff: time.Hour, // no reconnection: its reads would release too
		}
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		pc := srv.next(t)
		if !c.batching.Load() {
			t.Fatal("the connection's reads do not call the client's read hook (login.Config.BeforeRead)")
		}

		type change struct {
			id       string
			to       tracking.MessageState
			otherDTR bool // the other message of the pair was delivered when the callback ran
		}
		changes := make(chan change, 8)
		watch := func(tr, other *tracking.MessageTracker) {
			tr.OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
				changes <- change{tr.ID(), to, other != nil && other.State() == tracking.DeliveredToRecipient}
			})
		}
		m0 := sendAcked(t, c, Message{To: bob})
		m1 := sendAcked(t, c, Message{To: bob})
		m2 := sendAcked(t, c, Message{To: bob})
		m3 := sendAcked(t, c, Message{To: bob})
		watch(m0, nil)
		watch(m1, m2)
		watch(m2, nil)
		watch(m3, nil)

		// A first receipt starts the callbacks' goroutine, which then waits
		// for more (parked): from now on, a held change is not handed over
		// until a release (or the linger tick).
		pc.send(`<message from='bob@example.org/pc' id='r0'>%s</message>`, receiptFor(m0.ID()))
		if ch := recv(t, changes); ch.id != m0.ID() || ch.to != tracking.DeliveredToRecipient {
			t.Fatalf("first callback %+v, want %s delivered", ch, m0.ID())
		}
		synctest.Wait()

		// Two receipts read together: one wake-up when the reader reads on,
		// so m1's callback already sees m2 delivered.
		start := time.Now()
		pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message><message from='bob@example.org/pc' id='r2'>%s</message>`,
			receiptFor(m1.ID()), receiptFor(m2.ID()))
		if ch := recv(t, changes); ch.id != m1.ID() || !ch.otherDTR {
			t.Errorf("callback %+v: want %s, run after %s was delivered too (held until the reader read on)", ch, m1.ID(), m2.ID())
		}
		if ch := recv(t, changes); ch.id != m2.ID() {
			t.Errorf("callback %+v, want %s", ch, m2.ID())
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the callbacks waited %v (the linger tick) instead of the reader's next read", d)
		}
		synctest.Wait()

		// A receipt, then the end of the stream in the same read: no read
		// follows on this connection, the end of Serve releases it.
		start = time.Now()
		pc.send(`<message from='bob@example.org/pc' id='r3'>%s</message></stream:stream>`, receiptFor(m3.ID()))
		if ch := recv(t, changes); ch.id != m3.ID() || ch.to != tracking.DeliveredToRecipient {
			t.Errorf("callback %+v, want %s delivered", ch, m3.ID())
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("the callback waited %v (the linger tick) instead of the end of Serve", d)
		}
	})
}

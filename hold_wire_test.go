package xmpptrack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"sync/atomic"
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
	blocked chan struct{} // non-nil: writes wait until it is closed (see block)
	notify  chan struct{}
	closed  chan struct{}
	once    sync.Once
}

// block makes writes wait, as on a full send buffer of a peer that stopped
// reading, until unblock is called.
func (a *asyncConn) block() (unblock func()) {
	ch := make(chan struct{})
	a.mu.Lock()
	a.blocked = ch
	a.mu.Unlock()
	return func() {
		a.mu.Lock()
		a.blocked = nil
		a.mu.Unlock()
		close(ch)
	}
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
	blocked := a.blocked
	a.mu.Unlock()
	if blocked != nil {
		select {
		case <-blocked:
		case <-a.closed:
			return 0, net.ErrClosed
		}
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
	srv := newIdlePeer(t, nil)
	dial := func(context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		client, server := newAsyncConn(a), newAsyncConn(b)
		srv.wg.Go(func() { srv.serve(server) })
		return client, nil
	}
	return srv, dial
}

// pipePeerConfig is the Config of a client that reaches a pipe peer
// through dial (newPipePeer), without carbons and reconnecting after 1 s;
// roots and now come from outside the synctest bubble (see pipeClient).
func pipePeerConfig(roots *x509.CertPool, now time.Time, dial func(context.Context) (net.Conn, error)) Config {
	return Config{
		Addr: "peer", DirectTLS: true, NoCarbons: true, dial: dial,
		TLSConfig:  &tls.Config{RootCAs: roots, Time: func() time.Time { return now }},
		MinBackoff: time.Second, MaxBackoff: time.Second,
	}
}

// pipeClient dials a client to a pipe peer in a synctest bubble; roots
// and now come from outside the bubble (the certificate is valid now, not
// at the bubble's epoch). It returns the client's side of the connection
// too. The client does not reconnect within the test: a new connection's
// reads would release what it held.
func pipeClient(t *testing.T, roots *x509.CertPool, now time.Time) (*Client, *peerServer, *peerConn, *asyncConn) {
	t.Helper()
	srv, dial := newPipePeer(t)
	var conn atomic.Pointer[asyncConn]
	cfg := Config{
		Addr: "peer", DirectTLS: true, NoCarbons: true, // inbound stanzas: only what the test sends
		dial: func(ctx context.Context) (net.Conn, error) {
			c, err := dial(ctx)
			if err == nil {
				conn.Store(c.(*asyncConn))
			}
			return c, err
		},
		TLSConfig:  &tls.Config{RootCAs: roots, Time: func() time.Time { return now }},
		MinBackoff: time.Hour, MaxBackoff: time.Hour,
	}
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	defer cancel()
	c, err := Dial(ctx, testJID, peerPassword, &cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv, srv.next(t), conn.Load()
}

// stateChange is a callback's call, for the tests of the hold.
type stateChange struct {
	id       string
	to       tracking.MessageState
	otherDTR bool // the other tracker watched was delivered when the callback ran
}

// watchChanges reports tr's state changes on ch; other, if not nil, is
// the tracker whose delivery the callback notes.
func watchChanges(ch chan<- stateChange, tr, other *tracking.MessageTracker) {
	tr.OnStateChange(func(_, to tracking.MessageState, _ *tracking.Response) {
		ch <- stateChange{tr.ID(), to, other != nil && other.State() == tracking.DeliveredToRecipient}
	})
}

// startCallbacks has the peer deliver m, whose changes go to ch, and
// waits for its callback: the callbacks' goroutine then waits for more
// (parked), so that a held change is not handed over until a release (or
// the linger tick).
func startCallbacks(t *testing.T, pc *peerConn, ch <-chan stateChange, m *tracking.MessageTracker) {
	t.Helper()
	pc.send(`<message from='bob@example.org/pc' id='r-%s'>%s</message>`, m.ID(), receiptFor(m.ID()))
	if got := recv(t, ch); got.id != m.ID() || got.to != tracking.DeliveredToRecipient {
		t.Fatalf("first callback %+v, want %s delivered", got, m.ID())
	}
	synctest.Wait()
}

// TestHoldWiredEndToEnd: the client's connections call its read hook
// (login.Config.BeforeRead → readIdle), so the state changes of stanzas
// read together are held and go to the callbacks when the reader asks
// the network for more; and the end of Serve releases what the last
// stanzas of a connection proved, with no further read. Neither waits for
// the registry's linger tick: no time passes in the bubble.
func TestHoldWiredEndToEnd(t *testing.T) {
	roots, now := testRoots(t), time.Now()
	synctest.Test(t, func(t *testing.T) {
		c, _, pc, _ := pipeClient(t, roots, now)
		if !c.batching.Load() {
			t.Fatal("the connection's reads do not call the client's read hook (login.Config.BeforeRead)")
		}
		changes := make(chan stateChange, 8)
		m0 := sendAcked(t, c, Message{To: bob})
		m1 := sendAcked(t, c, Message{To: bob})
		m2 := sendAcked(t, c, Message{To: bob})
		m3 := sendAcked(t, c, Message{To: bob})
		watchChanges(changes, m0, nil)
		watchChanges(changes, m1, m2)
		watchChanges(changes, m2, nil)
		watchChanges(changes, m3, nil)
		startCallbacks(t, pc, changes, m0)

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

// TestHoldReleasedBeforeAnswer: the reader about to answer the server
// (an <a/> for its <r/>; service-unavailable for an IQ request that no
// Handler takes, or whose address does not parse) first releases what it
// held, so a receipt read
// just before reaches its callback though the answer's write waits (here:
// for room in the send buffer), not at the registry's linger tick.
func TestHoldReleasedBeforeAnswer(t *testing.T) {
	roots, now := testRoots(t), time.Now()
	for _, tc := range []struct {
		name, request string
		answered      func(t *testing.T, srv *peerServer, pc *peerConn)
	}{
		{"ack request", `<r xmlns='urn:xmpp:sm:3'/>`, func(t *testing.T, srv *peerServer, _ *peerConn) {
			if h := recv(t, srv.acks); h != 2 {
				t.Errorf("the answer to <r/> has h=%d, want 2 (the receipts)", h)
			}
		}},
		{"iq request", `<iq type='get' id='p1' from='example.org'><ping xmlns='urn:xmpp:ping'/></iq>`, iqRefused},
		{"unparsable iq request", `<iq type='get' id='p1' from='@example.org'><ping xmlns='urn:xmpp:ping'/></iq>`, iqRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, srv, pc, conn := pipeClient(t, roots, now)
				changes := make(chan stateChange, 8)
				m0 := sendAcked(t, c, Message{To: bob})
				m1 := sendAcked(t, c, Message{To: bob})
				watchChanges(changes, m0, nil)
				watchChanges(changes, m1, nil)
				startCallbacks(t, pc, changes, m0)

				unblock := conn.block()
				start := time.Now()
				pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>%s`, receiptFor(m1.ID()), tc.request)
				if ch := recv(t, changes); ch.id != m1.ID() || ch.to != tracking.DeliveredToRecipient {
					t.Errorf("callback %+v, want %s delivered", ch, m1.ID())
				}
				if d := time.Since(start); d != 0 {
					t.Errorf("the callback waited %v (the linger tick) while the reader's answer waited", d)
				}
				unblock()
				tc.answered(t, srv, pc)
			})
		})
	}
}

// iqRefused checks that the client answered the IQ request p1 with an
// error.
func iqRefused(t *testing.T, _ *peerServer, pc *peerConn) {
	t.Helper()
	e := pc.next(t)
	for e.XMLName.Local != "iq" { // the presence and messages written before
		e = pc.next(t)
	}
	if e.attr("id") != "p1" || e.attr("type") != "error" {
		t.Errorf("the answer to the IQ is %s, want an error for p1", e.String())
	}
}

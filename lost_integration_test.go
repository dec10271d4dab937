package xmpptrack

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// halfRelay forwards loopback connections to a server. halfClose ends the
// server-to-client direction of the live connections as a TCP proxy whose
// server went away does: the client gets an orderly end of stream (FIN)
// and nothing more, while what it writes still reaches the server, which
// sees the connection end once the client closes it.
type halfRelay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	live  []*relayLink
	after bytes.Buffer // what clients wrote after halfClose (TLS records)
}

type relayLink struct {
	client, server *net.TCPConn
	wmu            sync.Mutex // held while writing to the client
	muted          bool       // under wmu: the server's direction is over
}

func newHalfRelay(t *testing.T, target string) *halfRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &halfRelay{ln: ln, target: target}
	r.wg.Go(r.accept)
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, l := range r.live {
			l.client.Close()
			l.server.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

func (r *halfRelay) accept() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		l := &relayLink{client: c.(*net.TCPConn), server: s.(*net.TCPConn)}
		r.mu.Lock()
		r.live = append(r.live, l)
		r.mu.Unlock()
		r.wg.Go(func() { r.down(l) })
		r.wg.Go(func() { r.up(l) })
	}
}

// up forwards the client's bytes, keeping those written after halfClose;
// when the client ends, the server's connection is closed.
func (r *halfRelay) up(l *relayLink) {
	buf := make([]byte, 32<<10)
	for {
		n, err := l.client.Read(buf)
		if n > 0 {
			l.wmu.Lock()
			muted := l.muted
			l.wmu.Unlock()
			if muted {
				r.mu.Lock()
				r.after.Write(buf[:n])
				r.mu.Unlock()
			}
			if _, err := l.server.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	l.server.Close()
	l.client.Close()
}

// down forwards the server's bytes until halfClose, then drops them.
func (r *halfRelay) down(l *relayLink) {
	buf := make([]byte, 32<<10)
	for {
		n, err := l.server.Read(buf)
		l.wmu.Lock()
		if n > 0 && !l.muted {
			l.client.Write(buf[:n])
		}
		l.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

func (r *halfRelay) halfClose() {
	r.mu.Lock()
	live := r.live
	r.mu.Unlock()
	for _, l := range live {
		l.wmu.Lock()
		if !l.muted {
			l.muted = true
			l.client.CloseWrite()
		}
		l.wmu.Unlock()
	}
}

func (r *halfRelay) written() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.after.String()
}

// TestSMIntegrationHalfClosedResumes: when the server's direction of the
// connection ends without a stream close (a proxy half-closed it), the
// client drops the connection without writing </stream:stream> or a stream
// error, which would reach the server through the open direction and end
// its stream management session (Prosody revokes the resumption, ejabberd
// does not keep the session), and the next connection resumes the stream.
func TestSMIntegrationHalfClosedResumes(t *testing.T) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			srv := smIntegrationServer(t, kind, false, "alice")
			relay := newHalfRelay(t, srv.Addr())
			ctx, cancel := context.WithTimeout(t.Context(), faultWait)
			defer cancel()
			alice := faultDial(t, ctx, srv, "alice", Config{
				Addr: relay.ln.Addr().String(), TLSConfig: srv.TLSConfig(),
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
			})
			connected := make(chan bool, 4)
			alice.Observe(Observer{Connected: func(resumed bool) { connected <- resumed }})
			tr, err := alice.Send(ctx, Message{To: srv.JID("alice"), Body: "before the half-close"})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := tr.Wait(ctx, tracking.DeliveredToServer); st != tracking.DeliveredToServer {
				t.Fatalf("waiting for the server's ack: %v, %v", st, err)
			}

			relay.halfClose()
			select {
			case resumed := <-connected:
				if !resumed {
					t.Errorf("the next connection did not resume the stream (the client wrote %d bytes after the half-close)", len(relay.written()))
				}
			case <-ctx.Done():
				t.Fatal("the client did not connect again")
			}
		})
	}
}

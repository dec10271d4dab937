package attach

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// watchedConn records write deadlines set on it and signals each Write.
type watchedConn struct {
	net.Conn
	writing chan struct{}

	mu   sync.Mutex
	past int // write deadlines set in the past: a kick to other writers
}

func (c *watchedConn) Write(p []byte) (int, error) {
	select {
	case c.writing <- struct{}{}:
	default:
	}
	return c.Conn.Write(p)
}

func (c *watchedConn) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && t.Before(time.Now()) {
		c.mu.Lock()
		c.past++
		c.mu.Unlock()
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *watchedConn) kicks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.past
}

// pipeClient is a client whose session runs over a synchronous pipe: a
// write blocks until the peer reads it.
type pipeClient struct {
	s    *xmpp.Session
	conn *watchedConn
	peer net.Conn
	done chan struct{}

	mu        sync.Mutex
	next      int
	observers map[int]func(bool)
}

func (p *pipeClient) Session(context.Context) (*xmpp.Session, error) { return p.s, nil }
func (p *pipeClient) Done() <-chan struct{}                          { return p.done }
func (p *pipeClient) Observe(o xmpptrack.Observer) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := p.next
	p.observers[id] = o.Connected
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.observers, id)
	}
}

func newPipeClient(t *testing.T) *pipeClient {
	ours, peer := net.Pipe()
	conn := &watchedConn{Conn: ours, writing: make(chan struct{}, 1)}
	ready := func(context.Context, *stream.Info, *stream.Info, *xmpp.Session, any) (xmpp.SessionState, io.ReadWriter, any, error) {
		return xmpp.Ready, nil, nil, nil
	}
	s, err := xmpp.NewSession(context.Background(), jid.MustParse("example.org"), jid.MustParse("alice@example.org/x"), conn, 0, ready)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(nil)
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return &pipeClient{s: s, conn: conn, peer: peer, done: make(chan struct{}), observers: make(map[int]func(bool))}
}

var iqID = regexp.MustCompile(`<iq[^>]* id="([^"]+)"`)

// answer reads one IQ from the peer side and answers it with an empty result.
func (p *pipeClient) answer(t *testing.T) {
	r := bufio.NewReader(p.peer)
	buf := make([]byte, 4096)
	var got []byte
	for !iqID.Match(got) || !regexp.MustCompile(`</iq>`).Match(got) {
		n, err := r.Read(buf)
		if err != nil {
			t.Errorf("peer read: %v", err)
			return
		}
		got = append(got, buf[:n]...)
	}
	id := iqID.FindSubmatch(got)[1]
	if _, err := io.WriteString(p.peer, `<iq xmlns="jabber:client" type="result" from="example.org" id="`+string(id)+`"/>`); err != nil {
		t.Errorf("peer write: %v", err)
	}
}

// TestQueryNeverCancelsMellium: a caller that gives up while its IQ is
// being written gets ctx.Err() at once, and the connection's write deadline
// is never touched, so the writes of other goroutines go on. Handing mellium
// the caller's context sets the deadline in the past.
func TestQueryNeverCancelsMellium(t *testing.T) {
	p := newPipeClient(t)
	q := sessionQuery(p)
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() { result <- q(ctx, jid.MustParse("example.org"), query(discoNSInfo), nil) }()
	<-p.conn.writing // the IQ is being written; the peer does not read yet
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("q = %v, want context.Canceled", err)
	}
	// The write goes on; the peer reads it and answers, and the goroutine
	// that waited for the answer ends.
	p.answer(t)
	if n := p.conn.kicks(); n != 0 {
		t.Fatalf("%d write deadlines set in the past", n)
	}

	// An IQ that is answered returns the result.
	go p.answer(t)
	if err := q(t.Context(), jid.MustParse("example.org"), query(discoNSInfo), nil); err != nil {
		t.Fatalf("answered query: %v", err)
	}

	// When the connection is replaced, a query still waiting gives up.
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	select {
	case <-p.conn.writing: // the answered query's
	default:
	}
	result = make(chan error, 1)
	go func() { result <- q(ctx2, jid.MustParse("example.org"), query(discoNSInfo), nil) }()
	go p.answerless(t)
	<-p.conn.writing
	p.reconnect()
	if err := <-result; !errors.Is(err, stanza.ErrDisconnected) {
		t.Fatalf("q after a reconnection = %v, want stanza.ErrDisconnected", err)
	}
}

// answerless reads one IQ from the peer side and never answers it.
func (p *pipeClient) answerless(t *testing.T) {
	buf := make([]byte, 4096)
	var got []byte
	for !regexp.MustCompile(`</iq>`).Match(got) {
		n, err := p.peer.Read(buf)
		if err != nil {
			return
		}
		got = append(got, buf[:n]...)
	}
}

// reconnect runs the Connected observers, as the client does on a new
// connection.
func (p *pipeClient) reconnect() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.observers {
		f(false)
	}
}

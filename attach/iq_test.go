package attach

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
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

// pipeClient is a client whose session writes into a synchronous pipe (a
// write blocks until the peer reads it) and whose incoming IQs the test
// hands to the observers itself.
type pipeClient struct {
	s    *xmpp.Session
	conn *watchedConn
	peer net.Conn
	done chan struct{}

	mu        sync.Mutex
	next      int
	observers map[int]xmpptrack.Observer
}

func (p *pipeClient) Session(context.Context) (*xmpp.Session, error) { return p.s, nil }
func (p *pipeClient) Done() <-chan struct{}                          { return p.done }
func (p *pipeClient) Observe(o xmpptrack.Observer) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := p.next
	p.observers[id] = o
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
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return &pipeClient{s: s, conn: conn, peer: peer, done: make(chan struct{}), observers: make(map[int]xmpptrack.Observer)}
}

var iqID = regexp.MustCompile(`<iq[^>]* id="([^"]+)"`)

// readIQ reads one IQ on the peer side and returns its id.
func (p *pipeClient) readIQ(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 4096)
	var got []byte
	for !strings.Contains(string(got), "</iq>") {
		n, err := p.peer.Read(buf)
		if err != nil {
			t.Fatalf("peer read: %v", err)
		}
		got = append(got, buf[:n]...)
	}
	m := iqID.FindSubmatch(got)
	if m == nil {
		t.Fatalf("no id in %s", got)
	}
	return string(m[1])
}

// deliver hands an IQ reply to the observers as the client's reading
// goroutine does, and reports whether one consumed it.
func (p *pipeClient) deliver(typ xstanza.IQType, id, from, children string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	iq := xstanza.IQ{ID: id, Type: typ}
	if from != "" {
		iq.From = jid.MustParse(from)
	}
	for _, o := range p.observers {
		if o.IQ != nil && o.IQ(iq, xml.NewDecoder(strings.NewReader(children))) {
			return true
		}
	}
	return false
}

func (p *pipeClient) disconnect() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range p.observers {
		if o.Disconnected != nil {
			o.Disconnected(io.EOF)
		}
	}
}

// TestQueryGiveUpWhileWriting: a caller that gives up while its IQ is being
// written gets ctx.Err() at once, and the connection's write deadline is
// never touched (mellium's own IQ functions would set it in the past, failing
// the writes of other goroutines): the half-written connection is closed
// instead, and the client resumes the stream.
func TestQueryGiveUpWhileWriting(t *testing.T) {
	p := newPipeClient(t)
	q := sessionQuery(p)
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() { result <- q(ctx, jid.MustParse("example.org"), query(discoNSInfo), nil) }()
	<-p.conn.writing // the IQ is being written; the peer does not read
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("q = %v, want context.Canceled", err)
	}
	if n := p.conn.kicks(); n != 0 {
		t.Fatalf("%d write deadlines set in the past", n)
	}
	if _, err := p.peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection with half an IQ on it is still open")
	}
}

func TestQueryReply(t *testing.T) {
	p := newPipeClient(t)
	q := sessionQuery(p)
	upload := jid.MustParse("upload.example.org")
	info := `<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:http:upload:0'/></query>`

	// The answer counts only from the address asked.
	var got discoInfo
	result := make(chan error, 1)
	go func() { result <- q(t.Context(), upload, query(discoNSInfo), &got) }()
	id := p.readIQ(t)
	if p.deliver(xstanza.ResultIQ, id, "mallory@example.org", info) {
		t.Fatal("an answer from another address was taken")
	}
	if p.deliver(xstanza.ResultIQ, "other-id", upload.String(), info) {
		t.Fatal("an answer with another id was taken")
	}
	if !p.deliver(xstanza.ResultIQ, id, upload.String(), info) {
		t.Fatal("the answer was not taken")
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
	if ok, _ := got.upload(); !ok {
		t.Fatalf("decoded %+v", got)
	}

	// Our own domain answers without a from.
	go func() { result <- q(t.Context(), jid.MustParse("example.org"), query(discoNSItems), nil) }()
	if id = p.readIQ(t); !p.deliver(xstanza.ResultIQ, id, "", "") {
		t.Fatal("our server's answer without from was not taken")
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}

	// An error reply.
	go func() { result <- q(t.Context(), upload, query(discoNSInfo), nil) }()
	id = p.readIQ(t)
	p.deliver(xstanza.ErrorIQ, id, upload.String(), `<error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`)
	var ie *iqError
	if err := <-result; !errors.As(err, &ie) || ie.Stanza.Condition != xstanza.NotAllowed {
		t.Fatalf("q = %v, want not-allowed", err)
	}

	// Giving up while waiting for the answer; a late answer is left to
	// others. (A fresh connection: giving up just as the write ends may
	// close it.)
	p = newPipeClient(t)
	q = sessionQuery(p)
	ctx, cancel := context.WithCancel(t.Context())
	go func() { result <- q(ctx, upload, query(discoNSInfo), nil) }()
	id = p.readIQ(t)
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("q = %v, want context.Canceled", err)
	}
	if p.deliver(xstanza.ResultIQ, id, upload.String(), info) {
		t.Fatal("a late answer was taken")
	}

	// The connection ends while waiting.
	p = newPipeClient(t)
	q = sessionQuery(p)
	go func() { result <- q(t.Context(), upload, query(discoNSInfo), nil) }()
	p.readIQ(t)
	p.disconnect()
	if err := <-result; !errors.Is(err, stanza.ErrDisconnected) {
		t.Fatalf("q = %v, want stanza.ErrDisconnected", err)
	}
	if n := p.conn.kicks(); n != 0 {
		t.Fatalf("%d write deadlines set in the past", n)
	}
}

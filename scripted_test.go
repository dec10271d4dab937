package xmpptrack

// Two harnesses for tests of the Client without a real server.
//
// peerServer is a scripted server on loopback that the real Client dials:
// it logs alice@localhost in over direct TLS (PLAIN), binds
// alice@localhost/phone, answers <enable/>, <resume/>, <r/> and the carbons
// IQ itself, and lets the test inject raw XML and read every stanza the
// client writes. Its stream-management session outlives connections, as on
// a real server, so that the client can resume.
//
// newTapClient builds a Client with its registry, stream-management state
// and recipient but no connection; feedTap drives its tap with raw XML, and
// what the recipient queues stays in the outbox, which nobody drains.

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const (
	peerPassword = "secret"
	peerFullJID  = "alice@localhost/phone"
	peerFeatures = `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><sm xmlns='urn:xmpp:sm:3'/>`
	// testWait bounds every wait for an event, so that a broken client
	// fails the test instead of hanging it. No test waits it out when the
	// client works; it is long because a busy machine under the race
	// detector once took more than 10 s over TestRecipientBurst's 5,000
	// stanzas.
	testWait = 30 * time.Second
)

// element is one element the client wrote, as a tree.
type element struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []element  `xml:",any"`
	Text     string     `xml:",chardata"`
}

// attr returns the attribute with the local name, without namespace.
func (e *element) attr(local string) string {
	for _, a := range e.Attrs {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// child returns the first child with the name, or nil.
func (e *element) child(space, local string) *element {
	for i := range e.Children {
		if c := &e.Children[i]; c.XMLName.Space == space && c.XMLName.Local == local {
			return c
		}
	}
	return nil
}

func (e *element) String() string {
	b, err := xml.Marshal(e)
	if err != nil {
		return fmt.Sprintf("<%s ...> (%v)", e.XMLName.Local, err)
	}
	return string(b)
}

// readElement reads the next top-level element; io.EOF means the client
// closed its stream.
func readElement(d *xml.Decoder) (element, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return element{}, err
		}
		switch tok := tok.(type) {
		case xml.EndElement:
			return element{}, io.EOF
		case xml.StartElement:
			var e element
			err := d.DecodeElement(&e, &tok)
			e.dropXMLNS()
			return e, err
		}
	}
}

// dropXMLNS removes namespace declarations, which the names already carry.
func (e *element) dropXMLNS() {
	kept := e.Attrs[:0]
	for _, a := range e.Attrs {
		if a.Name.Space != "xmlns" && a.Name.Local != "xmlns" {
			kept = append(kept, a)
		}
	}
	e.Attrs = kept
	for i := range e.Children {
		e.Children[i].dropXMLNS()
	}
}

// peerServer is the scripted server. Fields under mu may be changed by the
// test between connections.
type peerServer struct {
	t        *testing.T
	l        net.Listener
	conns    chan *peerConn // logged-in connections, in order
	accepted chan struct{}  // one value per accepted TCP connection
	closed   chan struct{}
	wg       sync.WaitGroup

	mu        sync.Mutex
	hold      chan struct{} // non-nil: a new connection waits until it is closed
	noAcks    bool          // leave <r/> unanswered
	cutAfter  int           // non-zero: after the next message, read this many bytes unparsed, then hang up
	noResume  bool          // answer <resume/> with <failed/>
	noCarbons bool          // hand the carbons <enable/> IQ to the test unanswered
	authFail  []string      // SASL conditions for the next logins, one per login, before the password is checked
	stall     string        // "enable" or "resume": leave it unanswered, and signal stalled; "hangup": close the connection on <enable/>; "resume-hangup": on <resume/>
	stalled   chan struct{} // receives a value each time stall applied
	closes    int           // streams the client ended with </stream:stream> or a stream error
	sessions  int           // SM sessions enabled so far
	smID      string        // current SM session; "" = none
	inH       uint32        // stanzas received on the SM session
	acks      chan uint32   // the h of each <a/> the client wrote
	resumedAt []uint32      // the h of each <resume/> the client wrote
	carbons   []string      // the SM session of each carbons <enable/> IQ the client wrote ("": none)
	live      []*peerConn
}

// peerConn is one logged-in connection.
type peerConn struct {
	srv     *peerServer
	conn    net.Conn
	raw     net.Conn // the TCP connection under conn
	wmu     sync.Mutex
	in      chan element  // stanzas the client wrote, in order
	done    chan struct{} // closed when the connection is over
	resumed bool          // this connection resumed the previous stream
}

func newPeerServer(t *testing.T) *peerServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newIdlePeer(t, l)
	srv.wg.Add(1)
	go srv.acceptLoop()
	return srv
}

// newIdlePeer returns a peer server without connections yet, stopped when the
// test ends: its listener l (if any) closed, its live connections closed and
// its goroutines waited for.
func newIdlePeer(t *testing.T, l net.Listener) *peerServer {
	srv := &peerServer{
		t: t, l: l,
		conns:    make(chan *peerConn, 16),
		accepted: make(chan struct{}, 16),
		closed:   make(chan struct{}),
		stalled:  make(chan struct{}, 16),
		acks:     make(chan uint32, 64),
	}
	t.Cleanup(func() {
		close(srv.closed)
		if l != nil {
			l.Close()
		}
		srv.mu.Lock()
		live := srv.live
		srv.mu.Unlock()
		for _, pc := range live {
			pc.conn.Close()
		}
		srv.wg.Wait()
	})
	return srv
}

func (srv *peerServer) acceptLoop() {
	defer srv.wg.Done()
	for {
		conn, err := srv.l.Accept()
		if err != nil {
			return
		}
		srv.wg.Add(1)
		go func() {
			defer srv.wg.Done()
			srv.serve(conn)
		}()
	}
}

// set changes the script under the lock.
func (srv *peerServer) set(f func(srv *peerServer)) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	f(srv)
}

// next returns the next logged-in connection.
func (srv *peerServer) next(t *testing.T) *peerConn {
	t.Helper()
	select {
	case pc := <-srv.conns:
		return pc
	case <-time.After(testWait):
		t.Fatal("the client did not log in")
		return nil
	}
}

// waitAccepted waits until the client opened a TCP connection.
func (srv *peerServer) waitAccepted(t *testing.T) {
	t.Helper()
	select {
	case <-srv.accepted:
	case <-time.After(testWait):
		t.Fatal("the client did not connect")
	}
}

// fail reports a protocol violation by the client.
func (srv *peerServer) fail(format string, args ...any) {
	select {
	case <-srv.closed: // the test is over: the client went away mid-login
	default:
		srv.t.Errorf("peer server: "+format, args...)
	}
}

// serve logs one connection in and then serves it.
func (srv *peerServer) serve(raw net.Conn) {
	defer raw.Close()
	srv.mu.Lock()
	hold := srv.hold
	srv.mu.Unlock()
	select {
	case srv.accepted <- struct{}{}:
	default:
	}
	if hold != nil {
		select {
		case <-hold:
		case <-srv.closed:
			return
		}
	}
	conn := tls.Server(raw, testCertificate(srv.t))
	pc := &peerConn{srv: srv, conn: conn, raw: raw, in: make(chan element, 1<<14), done: make(chan struct{})}
	defer close(pc.done)
	srv.mu.Lock()
	srv.live = append(srv.live, pc)
	srv.mu.Unlock()

	d := xml.NewDecoder(conn)
	if err := openStream(conn, d, plainOnly); err != nil {
		return
	}
	auth, err := readElement(d)
	if err != nil {
		return
	}
	srv.mu.Lock()
	var authFail string
	if len(srv.authFail) > 0 {
		authFail, srv.authFail = srv.authFail[0], srv.authFail[1:]
	}
	srv.mu.Unlock()
	if authFail != "" {
		pc.write(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><` + authFail + `/></failure>`)
		return
	}
	creds, _ := base64.StdEncoding.DecodeString(auth.Text)
	if auth.XMLName.Local != "auth" || auth.attr("mechanism") != "PLAIN" || string(creds) != "\x00alice\x00"+peerPassword {
		pc.write(`<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>`)
		return
	}
	pc.write(`<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`)
	if err := openStream(conn, d, peerFeatures); err != nil {
		return
	}
	for bound := false; !bound; {
		e, err := readElement(d)
		if err != nil {
			return
		}
		switch {
		case e.XMLName.Local == "resume" && srv.stalls("resume"):
			continue
		case e.XMLName.Local == "resume" && srv.stalls("resume-hangup"):
			return
		case e.XMLName.Local == "resume":
			bound = srv.resume(pc, &e)
		case e.XMLName.Local == "iq" && e.child("urn:ietf:params:xml:ns:xmpp-bind", "bind") != nil:
			pc.write(fmt.Sprintf(`<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>%s</jid></bind></iq>`,
				e.attr("id"), peerFullJID))
			bound = true
		default:
			srv.fail("unexpected %s during login", e.String())
			return
		}
	}
	select {
	case srv.conns <- pc:
	case <-srv.closed:
		return
	}
	srv.loop(pc, d)
}

// stalls reports whether the script leaves the element named what
// unanswered, and signals it.
func (srv *peerServer) stalls(what string) bool {
	srv.mu.Lock()
	stall := srv.stall == what
	srv.mu.Unlock()
	if stall {
		srv.stalled <- struct{}{}
	}
	return stall
}

// resume answers <resume/>; it reports whether the stream was resumed.
func (srv *peerServer) resume(pc *peerConn, e *element) bool {
	srv.mu.Lock()
	ok := !srv.noResume && srv.smID != "" && e.attr("previd") == srv.smID
	h := srv.inH
	if !ok {
		srv.smID = ""
	}
	claim, _ := strconv.ParseUint(e.attr("h"), 10, 32)
	srv.resumedAt = append(srv.resumedAt, uint32(claim))
	srv.mu.Unlock()
	if !ok {
		pc.write(`<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`)
		return false
	}
	pc.resumed = true
	pc.write(fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, e.attr("previd"), h))
	return true
}

// loop answers what the server answers itself and hands every stanza to the test.
func (srv *peerServer) loop(pc *peerConn, d *xml.Decoder) {
	for {
		e, err := readElement(d)
		if errors.Is(err, io.EOF) {
			srv.set(func(srv *peerServer) { srv.closes++ })
			pc.write(`</stream:stream>`)
			return
		}
		if err != nil {
			return
		}
		if e.XMLName.Local == "error" && e.XMLName.Space == "http://etherx.jabber.org/streams" {
			srv.set(func(srv *peerServer) { srv.closes++ })
			return
		}
		switch e.XMLName.Local {
		case "enable":
			if srv.stalls("enable") {
				continue
			}
			if srv.stalls("hangup") {
				return
			}
			srv.mu.Lock()
			srv.sessions++
			srv.smID = fmt.Sprintf("sm-%d", srv.sessions)
			srv.inH = 0
			id := srv.smID
			srv.mu.Unlock()
			pc.write(fmt.Sprintf(`<enabled xmlns='urn:xmpp:sm:3' id='%s' resume='true'/>`, id))
			continue
		case "r":
			srv.mu.Lock()
			h, hold := srv.inH, srv.noAcks
			srv.mu.Unlock()
			if !hold {
				pc.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h))
			}
			continue
		case "a":
			h, _ := strconv.ParseUint(e.attr("h"), 10, 32)
			select {
			case srv.acks <- uint32(h):
			default:
			}
			continue
		case "message", "presence", "iq":
			srv.mu.Lock()
			if srv.smID != "" {
				srv.inH++
			}
			srv.mu.Unlock()
		default:
			srv.fail("unexpected %s", e.String())
			continue
		}
		isCarbons := e.XMLName.Local == "iq" && e.child("urn:xmpp:carbons:2", "enable") != nil
		srv.mu.Lock()
		noCarbons := srv.noCarbons
		if isCarbons {
			srv.carbons = append(srv.carbons, srv.smID)
		}
		srv.mu.Unlock()
		if isCarbons && !noCarbons {
			pc.write(fmt.Sprintf(`<iq type='result' id='%s' to='%s'/>`, e.attr("id"), peerFullJID))
			continue
		}
		srv.mu.Lock()
		cut := 0
		if e.XMLName.Local == "message" {
			cut, srv.cutAfter = srv.cutAfter, 0
		}
		srv.mu.Unlock()
		if cut > 0 {
			// A small receive buffer, so that a large write of the client's
			// is still under way when it reaches the cut.
			pc.raw.(*net.TCPConn).SetReadBuffer(cut)
		}
		select {
		case pc.in <- e:
		case <-srv.closed: // the test ended (failed) without reading it
			return
		}
		if cut > 0 {
			io.CopyN(io.Discard, pc.conn, int64(cut))
			pc.raw.Close() // unread data: the client gets a reset
			return
		}
	}
}

// write writes raw XML to the client.
func (pc *peerConn) write(raw string) {
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	io.WriteString(pc.conn, raw)
}

// send writes raw XML to the client; args format it like fmt.Sprintf.
func (pc *peerConn) send(format string, args ...any) {
	if len(args) > 0 {
		format = fmt.Sprintf(format, args...)
	}
	pc.write(format)
}

// kill ends the connection with a stream error.
func (pc *peerConn) kill(condition string) {
	pc.write(`<stream:error><` + condition + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
	pc.conn.Close()
}

// next returns the next stanza the client wrote.
func (pc *peerConn) next(t *testing.T) element {
	t.Helper()
	select {
	case e := <-pc.in:
		return e
	case <-time.After(testWait):
		t.Fatal("the client wrote nothing")
		return element{}
	}
}

// nextMessage returns the next message the client wrote, skipping presence.
func (pc *peerConn) nextMessage(t *testing.T) element {
	t.Helper()
	for {
		if e := pc.next(t); e.XMLName.Local == "message" {
			return e
		}
	}
}

// dialPeer dials srv with cfg and closes the client when the test ends.
func dialPeer(t *testing.T, srv *peerServer, cfg Config) *Client {
	t.Helper()
	return dialPeerWithin(t, srv, cfg, testWait)
}

// dialPeerWithin is dialPeer with Dial bounded by guard instead of
// testWait, for a Dial whose work grows with the machine's load (a guard,
// not a measure).
func dialPeerWithin(t *testing.T, srv *peerServer, cfg Config, guard time.Duration) *Client {
	t.Helper()
	atPeer(t, srv, &cfg)
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	}
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	c, err := Dial(ctx, testJID, peerPassword, &cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// atPeer points cfg at the scripted server srv (direct TLS with the test
// certificates).
func atPeer(t *testing.T, srv *peerServer, cfg *Config) {
	cfg.Addr = srv.l.Addr().String()
	cfg.DirectTLS = true
	cfg.TLSConfig = &tls.Config{RootCAs: testRoots(t)}
}

// newPeer starts a scripted server and a client logged in to it.
func newPeer(t *testing.T, cfg Config) (*Client, *peerConn) {
	t.Helper()
	srv := newPeerServer(t)
	c := dialPeer(t, srv, cfg)
	return c, srv.next(t)
}

// waitCtx returns a context for one wait of the test.
func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	t.Cleanup(cancel)
	return ctx
}

// sendAcked sends m and waits until the server acknowledged it, so that
// later evidence meets a known state.
func sendAcked(t *testing.T, c *Client, m Message) *tracking.MessageTracker {
	t.Helper()
	ctx := waitCtx(t)
	tr, err := c.Send(ctx, m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if st, err := tr.Wait(ctx, tracking.DeliveredToServer); err != nil || st != tracking.DeliveredToServer {
		t.Fatalf("waiting for the server's ack: %v, %v", st, err)
	}
	return tr
}

// waitState waits until tr reaches want (a progress state).
func waitState(t *testing.T, tr *tracking.MessageTracker, want tracking.MessageState) {
	t.Helper()
	if st, err := tr.Wait(waitCtx(t), want); st != want {
		t.Fatalf("%s: state %v (%v), want %v", tr.ID(), st, err, want)
	}
}

// wantState checks the state of tr now.
func wantState(t *testing.T, tr *tracking.MessageTracker, want tracking.MessageState) {
	t.Helper()
	if st := tr.State(); st != want {
		t.Errorf("%s: state %v, want %v", tr.ID(), st, want)
	}
}

// appLog is a Config.Handler that records the id of every message it gets;
// it decodes each one whole, so a truncated stanza fails the connection.
type appLog struct {
	mu      sync.Mutex
	ids     []string
	changed chan struct{} // closed and replaced on every message
}

func newAppLog() *appLog { return &appLog{changed: make(chan struct{})} }

func (l *appLog) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil
	}
	var e element
	if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t)).Decode(&e); err != nil {
		return err
	}
	l.mu.Lock()
	l.ids = append(l.ids, e.attr("id"))
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// saw reports whether the application got a message with the id.
func (l *appLog) saw(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.ids, id)
}

// waitFor waits until the application got the message with the id.
func (l *appLog) waitFor(t *testing.T, id string) {
	t.Helper()
	timeout := time.After(testWait)
	for {
		l.mu.Lock()
		ok, changed := slices.Contains(l.ids, id), l.changed
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("the application never got message %q", id)
		}
	}
}

// waitForMoving waits until the application got the message with the id,
// as long as it gets a message at least every testWait: for a burst whose
// whole length depends on the machine's load.
func (l *appLog) waitForMoving(t *testing.T, id string) {
	t.Helper()
	timeout := time.NewTimer(testWait)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		ok, got, changed := slices.Contains(l.ids, id), len(l.ids), l.changed
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
			timeout.Reset(testWait)
		case <-timeout.C:
			t.Fatalf("the application never got message %q: it got %d, none in the last %v", id, got, testWait)
		}
	}
}

// newTapClient returns a Client without a connection, set up as Dial sets
// it up.
func newTapClient(t testing.TB, cfg Config) *Client {
	c := &Client{cfg: cfg, account: testJID, self: testJID.Bare().String()}
	c.log = c.cfg.logger()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.done = make(chan struct{})
	c.up = make(chan struct{})
	c.reg = registry.New(registry.Config{MaxPending: cfg.MaxPending, Window: cfg.Window})
	c.sm = sm.New(cfg.StreamManagement)
	c.rcp = newRecipient(c)
	c.ev = newEvents()
	go c.ev.run()
	t.Cleanup(func() {
		c.ev.stop()
		c.cancel()
		c.reg.Close()
	})
	return c
}

// track registers a message to the conversation as Send does.
func track(t testing.TB, c *Client, to, id string) *tracking.MessageTracker {
	t.Helper()
	tr, err := c.reg.TryTrack(to, id, registry.TrackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// stanzaStream is a reader of one stream of n stanzas made by gen, so that
// a flood needs no memory of its own.
type stanzaStream struct {
	gen  func(i int) string
	n, i int
	buf  strings.Reader
	end  bool
}

func newStanzaStream(n int, gen func(i int) string) *stanzaStream {
	s := &stanzaStream{gen: gen, n: n}
	s.buf.Reset("<stream xmlns='jabber:client'>")
	return s
}

func (s *stanzaStream) Read(p []byte) (int, error) {
	for s.buf.Len() == 0 {
		switch {
		case s.i < s.n:
			s.buf.Reset(s.gen(s.i))
			s.i++
		case !s.end:
			s.buf.Reset("</stream>")
			s.end = true
		default:
			return 0, io.EOF
		}
	}
	return s.buf.Read(p)
}

// feedTap passes every stanza of r through the client's tap as Session.Serve
// would (without mellium's normalization of our own bare JID to an empty
// from), and returns how many it passed. A handler error fails the test.
func feedTap(t testing.TB, c *Client, app xmpp.Handler, r io.Reader) int {
	t.Helper()
	h := c.tap(app)
	d := xml.NewDecoder(r)
	enc := xml.NewEncoder(io.Discard)
	n := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok || start.Name.Local == "stream" {
			continue
		}
		rw := struct {
			xml.TokenReader
			xmlstream.Encoder
		}{xmlstream.InnerElement(d), enc}
		if err := h.HandleXMPP(rw, &start); err != nil {
			t.Fatalf("tap: %v", err)
		}
		// Like Serve, skip what the handler left unread.
		if _, err := xmlstream.Copy(xmlstream.Discard(), rw); err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// receiptFor is the XML of a receipt for id.
func receiptFor(id string) string {
	return fmt.Sprintf(`<received xmlns='%s' id='%s'/>`, stanza.NSReceipts, id)
}

// logRecorder is a slog.Handler that keeps the messages of every record.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// all returns the messages of the records so far.
func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// count returns how many records contained substr.
func (l *logRecorder) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

package sm

// A scripted XMPP server and a client harness for the tests: two real
// mellium sessions over net.Pipe. The server runs its own negotiation
// (a custom xmpp.Negotiator speaking raw XML) and serves with a handler
// that counts stanzas independently of the package under test, so the h
// values it expects are an independent check of the client's counting.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/xmpptrack/xmpptrack/stanza"
)

const (
	testDomain = "example.net"
	testUser   = "user@example.net"
	nsTestAuth = "urn:xmpptrack:test:auth"
	nsBind     = "urn:ietf:params:xml:ns:xmpp-bind"
)

// bufConn makes writes asynchronous, like a TCP send buffer, so that the
// scripted server never blocks on a client that is busy writing. It also
// records what it reads.
type bufConn struct {
	net.Conn
	mu      sync.Mutex
	pending []byte
	read    bytes.Buffer
	notify  chan struct{}
	closed  chan struct{}
	once    sync.Once
	drained bool // close once everything pending is written
	frozen  bool // bytes stop flowing both ways (a frozen link); guarded by mu
	deaf    bool // the server stops reading but still writes; guarded by mu
	swallow bool // with frozen: the server's end reads on and discards; guarded by mu
	inRead  int  // reads past the freeze check, taking the next write; guarded by mu
	readIn  chan struct{}
}

// waitInRead waits until a read of the server's is under way (one that
// takes the next write of the client's even after a freeze), for tests
// that run in real time; false if stop was closed first.
func (b *bufConn) waitInRead(stop <-chan struct{}) bool {
	for {
		b.mu.Lock()
		n := b.inRead
		b.mu.Unlock()
		if n > 0 {
			return true
		}
		select {
		case <-b.readIn:
		case <-stop:
			return false
		}
	}
}

// freeze stops the link without closing it: a read of the server's under
// way takes one more write of the client's, which is discarded; after it
// the server reads nothing, so the client's next write blocks (a pipe has
// no buffer to fill); what the server writes is never delivered.
func (b *bufConn) freeze() {
	b.mu.Lock()
	b.frozen = true
	b.mu.Unlock()
}

// swallowAll freezes the link as freeze does, except that the server's
// end goes on reading and discards what it reads: the client's writes
// complete, as writes into a TCP send buffer with room do, and nothing
// comes back (a server that accepts bytes and never answers).
func (b *bufConn) swallowAll() {
	b.mu.Lock()
	b.frozen, b.swallow = true, true
	b.mu.Unlock()
}

func (b *bufConn) isFrozen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.frozen
}

// deafen stops the server's reading only (as freeze does for reads: one
// read under way completes and is discarded), what the server writes is still delivered (a server that
// stopped processing its input, or never saw the client's closing tag).
func (b *bufConn) deafen() {
	b.mu.Lock()
	b.deaf = true
	b.mu.Unlock()
}

func (b *bufConn) isDeaf() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.frozen || b.deaf
}

// closeWhenDrained closes the connection after the pending bytes reached
// the peer.
func (b *bufConn) closeWhenDrained() {
	b.mu.Lock()
	b.drained = true
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

func newBufConn(c net.Conn) *bufConn {
	b := &bufConn{Conn: c, notify: make(chan struct{}, 1), closed: make(chan struct{}), readIn: make(chan struct{}, 1)}
	go b.pump()
	return b
}

func (b *bufConn) Write(p []byte) (int, error) {
	select {
	case <-b.closed:
		return 0, net.ErrClosed
	default:
	}
	b.mu.Lock()
	b.pending = append(b.pending, p...)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *bufConn) pump() {
	for {
		select {
		case <-b.notify:
		case <-b.closed:
			return
		}
		b.mu.Lock()
		p := b.pending
		b.pending = nil
		frozen := b.frozen
		b.mu.Unlock()
		if len(p) > 0 && !frozen {
			if _, err := b.Conn.Write(p); err != nil {
				return
			}
		}
		b.mu.Lock()
		done := b.drained && len(b.pending) == 0
		b.mu.Unlock()
		if done {
			b.Close()
			return
		}
	}
}

func (b *bufConn) Read(p []byte) (int, error) {
	if b.isDeaf() {
		return b.stall()
	}
	b.mu.Lock()
	b.inRead++
	b.mu.Unlock()
	select {
	case b.readIn <- struct{}{}:
	default:
	}
	n, err := b.Conn.Read(p)
	b.mu.Lock()
	b.inRead--
	b.mu.Unlock()
	if b.isDeaf() {
		return b.stall()
	}
	b.mu.Lock()
	b.read.Write(p[:n])
	b.mu.Unlock()
	return n, err
}

// stall is a read of a frozen or deaf link: it returns only once the
// connection is closed, reading on and discarding meanwhile if the link
// swallows.
func (b *bufConn) stall() (int, error) {
	b.mu.Lock()
	swallow := b.swallow
	b.mu.Unlock()
	if swallow {
		io.Copy(io.Discard, b.Conn)
	}
	<-b.closed
	return 0, net.ErrClosed
}

func (b *bufConn) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.Conn.Close()
}

func (b *bufConn) received() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read.String()
}

// got is a stanza the server handled.
type got struct {
	name, id, typ string
	delay         bool
	body          string
}

// fakeServer is a scripted server with a stream management session that
// outlives connections, like a hibernating real server.
type fakeServer struct {
	t testing.TB

	// Script; set before dialling.
	offerSM      bool
	base         uint32                       // counters start here (wrap-around tests)
	enableFails  bool                         // answer <enable/> with <failed/>
	enabledAttrs string                       // attributes of <enabled/>; "" = default
	resumeReply  func(h uint32) string        // raw answer to <resume/>; nil = default
	rReply       func(h uint32) string        // raw answer to <r/>; nil = correct <a/>
	lose         func(id string) bool         // stanzas dropped without counting
	holdR        bool                         // do not answer <r/> until releaseR
	dieOnResume  bool                         // cut the connection after <resumed/>
	tls          *tls.Config                  // require STARTTLS with this config
	rtt          time.Duration                // delay of the answers to <r/>
	rDelay       func(h uint32) time.Duration // delay of the answer to an <r/> that found h stanzas; nil = rtt
	holdEnabled  bool                         // keep the answer to <enable/> until releaseEnabled
	cutAfter     func(g got) bool             // cut the connection after handling g
	refuse       func(g got) bool             // close the stream with policy-violation on g, unhandled
	clientWrap   func(net.Conn) net.Conn      // wraps the client's end of a link; nil = not wrapped

	wmu sync.Mutex // orders the server's writes with its outbound counter

	mu                sync.Mutex
	nextID            int
	smID              string
	resumable         bool
	inH, outH         uint32
	sent              []sentRec // stanzas sent and not acked by the client
	got               []got
	enables, resumes  int
	rs, held          int
	acks, wantAcks    []uint32
	ackErrs           []string
	badAcks           int
	cur               *srvConn
	resumedAt         []uint32 // h of each <resume/> received
	lastResumeFromCli uint32
	heldEnabled       string   // answer to <enable/> kept by holdEnabled
	heldOn            *srvConn // its connection
	conns             []*srvConn
}

type sentRec struct {
	seq uint32
	raw string
}

type srvConn struct {
	srv   *fakeServer
	conn  *bufConn
	neg   *xmpp.Session // while negotiating
	sess  *xmpp.Session // once ready
	smOn  bool          // guarded by srv.mu
	done  chan struct{}
	err   error
	ready chan struct{}
}

func newFakeServer(t testing.TB) *fakeServer {
	return &fakeServer{t: t, offerSM: true}
}

// accept serves one connection.
func (srv *fakeServer) accept(c net.Conn) *srvConn {
	sc := &srvConn{srv: srv, conn: newBufConn(c), done: make(chan struct{}), ready: make(chan struct{})}
	srv.mu.Lock()
	srv.cur = sc
	srv.conns = append(srv.conns, sc)
	srv.mu.Unlock()
	go func() {
		defer close(sc.done)
		s, err := xmpp.ReceiveSession(context.Background(), sc.conn, 0, srv.negotiator(sc))
		if err != nil {
			sc.err = err
			close(sc.ready)
			sc.conn.Close()
			return
		}
		sc.sess = s
		close(sc.ready)
		srv.mu.Lock()
		die := srv.dieOnResume && sc.smOn
		srv.dieOnResume = srv.dieOnResume && !die
		srv.mu.Unlock()
		if die {
			sc.conn.closeWhenDrained()
			return
		}
		sc.err = s.Serve(sc)
		sc.conn.Close()
	}()
	return sc
}

func (srv *fakeServer) negotiator(sc *srvConn) xmpp.Negotiator {
	return func(ctx context.Context, in, out *stream.Info, s *xmpp.Session, data interface{}) (xmpp.SessionState, io.ReadWriter, interface{}, error) {
		step, _ := data.(int)
		sc.neg = s
		r := s.TokenReader()
		defer r.Close()
		d := xml.NewTokenDecoder(r)
		for {
			tok, err := d.Token()
			if err != nil {
				return 0, nil, nil, err
			}
			if start, ok := tok.(xml.StartElement); ok {
				if err := in.FromStartElement(start); err != nil {
					return 0, nil, nil, err
				}
				break
			}
		}
		out.XMLNS = nsClient
		hdr := fmt.Sprintf(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' `+
			`xmlns:stream='http://etherx.jabber.org/streams' version='1.0' from='%s' id='stream-%d'>`, testDomain, step)
		if srv.tls != nil {
			step-- // step -1 is STARTTLS
		}
		if step == -1 {
			sc.raw(hdr + `<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>`)
			start, err := nextStart(d)
			if err != nil {
				return 0, nil, nil, err
			}
			if err := d.Skip(); err != nil {
				return 0, nil, nil, err
			}
			if start.Name.Local != "starttls" {
				return 0, nil, nil, fmt.Errorf("fake server: want starttls, got %v", start.Name)
			}
			sc.raw(`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
			return xmpp.Secure, tls.Server(s.Conn(), srv.tls), 1, nil
		}
		next := step + 1
		if srv.tls != nil {
			next++
		}
		if step == 0 {
			sc.raw(hdr + `<stream:features><auth xmlns='` + nsTestAuth + `'/></stream:features>`)
			start, err := nextStart(d)
			if err != nil {
				return 0, nil, nil, err
			}
			if err := d.Skip(); err != nil {
				return 0, nil, nil, err
			}
			if start.Name.Local != "auth" {
				return 0, nil, nil, fmt.Errorf("fake server: want auth, got %v", start.Name)
			}
			sc.raw(`<success xmlns='` + nsTestAuth + `'/>`)
			return xmpp.Authn, s.Conn(), next, nil
		}
		features := `<stream:features><bind xmlns='` + nsBind + `'/>`
		if srv.offerSM {
			features += `<sm xmlns='urn:xmpp:sm:3'/>`
		}
		sc.raw(hdr + features + `</stream:features>`)
		for {
			start, err := nextStart(d)
			if err != nil {
				return 0, nil, nil, err
			}
			switch start.Name.Local {
			case "iq":
				var id string
				for _, a := range start.Attr {
					if a.Name.Local == "id" {
						id = a.Value
					}
				}
				if err := d.Skip(); err != nil {
					return 0, nil, nil, err
				}
				srv.mu.Lock()
				srv.nextID++
				res := fmt.Sprintf("res%d", srv.nextID)
				srv.mu.Unlock()
				sc.raw(fmt.Sprintf(`<iq type='result' id='%s'><bind xmlns='%s'><jid>%s/%s</jid></bind></iq>`, id, nsBind, testUser, res))
				return xmpp.Ready, nil, nil, nil
			case "resume":
				var rs stanza.Resume
				if err := d.DecodeElement(&rs, &start); err != nil {
					return 0, nil, nil, err
				}
				if srv.resume(sc, rs) {
					return xmpp.Ready, nil, nil, nil
				}
			default:
				return 0, nil, nil, fmt.Errorf("fake server: unexpected %v", start.Name)
			}
		}
	}
}

// resume answers <resume/>; it reports whether the stream was resumed.
func (srv *fakeServer) resume(sc *srvConn, rs stanza.Resume) bool {
	srv.wmu.Lock()
	defer srv.wmu.Unlock()
	srv.mu.Lock()
	srv.resumes++
	srv.resumedAt = append(srv.resumedAt, rs.H)
	var reply string
	ok := false
	switch {
	case srv.resumeReply != nil:
		reply = srv.resumeReply(srv.inH)
		ok = strings.Contains(reply, "<resumed")
	case rs.PrevID == srv.smID && srv.resumable:
		reply = fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, srv.smID, srv.inH)
		ok = true
	default:
		reply = `<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
	}
	var resend []sentRec
	if ok {
		sc.smOn = true
		srv.ackSentLocked(rs.H)
		resend = srv.sent
		srv.sent = nil
		srv.outH = rs.H
		for _, s := range resend {
			srv.outH++
			srv.sent = append(srv.sent, sentRec{seq: srv.outH, raw: s.raw})
		}
	} else {
		srv.smID, srv.resumable = "", false
	}
	srv.mu.Unlock()
	sc.writeLocked(reply)
	for _, s := range resend {
		sc.writeLocked(s.raw)
	}
	return ok
}

func (srv *fakeServer) ackSentLocked(h uint32) {
	for len(srv.sent) > 0 && int32(h-srv.sent[0].seq) >= 0 {
		srv.sent = srv.sent[1:]
	}
}

// raw writes bytes that are not stanzas.
func (sc *srvConn) raw(s string) { sc.write(s, 0) }

// send writes one stanza to the client and counts it.
func (sc *srvConn) send(raw string) { sc.write(raw, 1) }

// write writes raw bytes holding the session's output lock, so that they
// are ordered with what the handler encodes, and counts n stanzas.
func (sc *srvConn) write(raw string, n int) {
	srv := sc.srv
	srv.wmu.Lock()
	defer srv.wmu.Unlock()
	srv.mu.Lock()
	if sc.smOn {
		for range n {
			srv.outH++
			srv.sent = append(srv.sent, sentRec{seq: srv.outH, raw: raw})
		}
	}
	srv.mu.Unlock()
	sc.writeLocked(raw)
}

func (sc *srvConn) writeLocked(raw string) {
	if sc.sess == nil { // negotiating
		sc.neg.Conn().Write([]byte(raw))
		return
	}
	w := sc.sess.TokenWriter()
	sc.sess.Conn().Write([]byte(raw))
	w.Close()
}

// requestAck sends <r/> and remembers the h the client must answer.
func (sc *srvConn) requestAck() {
	srv := sc.srv
	srv.wmu.Lock()
	defer srv.wmu.Unlock()
	srv.mu.Lock()
	srv.wantAcks = append(srv.wantAcks, srv.outH)
	srv.mu.Unlock()
	sc.writeLocked(`<r xmlns='urn:xmpp:sm:3'/>`)
}

// releaseR answers the held <r/>s with the current count.
func (srv *fakeServer) releaseR() {
	srv.mu.Lock()
	n := srv.held
	srv.held = 0
	srv.holdR = false
	h := srv.inH
	sc := srv.cur
	srv.mu.Unlock()
	for range n {
		sc.raw(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h))
	}
}

// cutErr reports whether err, met inside a stanza, means the link was cut
// there (by either side) rather than that the XML was refused.
func cutErr(err error) bool {
	var se *xml.SyntaxError
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &se) && strings.HasPrefix(se.Msg, "unexpected EOF")
}

// HandleXMPP is the server's handler.
func (sc *srvConn) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	srv := sc.srv
	if start.Name.Space == NS {
		switch start.Name.Local {
		case "enable":
			var en stanza.Enable
			if err := decodeSM(t, start, &en); err != nil {
				srv.t.Errorf("fake server: bad enable: %v", err)
			}
			srv.enable(sc, en)
		case "r":
			srv.mu.Lock()
			srv.rs++
			h := srv.inH
			hold := srv.holdR
			if hold {
				srv.held++
			}
			srv.mu.Unlock()
			if hold {
				return nil
			}
			reply := fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h)
			if srv.rReply != nil {
				reply = srv.rReply(h)
			}
			delay := srv.rtt
			if srv.rDelay != nil {
				delay = srv.rDelay(h)
			}
			if delay > 0 { // the answer travels back later
				time.AfterFunc(delay, func() { sc.raw(reply) })
				return nil
			}
			sc.raw(reply)
		case "a":
			var a stanza.Ack
			err := decodeSM(t, start, &a)
			srv.mu.Lock()
			if err != nil {
				srv.badAcks++
			} else {
				srv.acks = append(srv.acks, a.H)
				if len(srv.wantAcks) > 0 {
					want := srv.wantAcks[0]
					srv.wantAcks = srv.wantAcks[1:]
					if a.H != want {
						srv.ackErrs = append(srv.ackErrs, fmt.Sprintf("client answered h=%d, want %d", a.H, want))
					}
				}
				srv.ackSentLocked(a.H)
			}
			srv.mu.Unlock()
		}
		return nil
	}
	if start.Name.Space != nsClient {
		return nil
	}
	g := got{name: start.Name.Local}
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "id":
			g.id = a.Value
		case "type":
			g.typ = a.Value
		}
	}
	depth := 0
	inBody := false
	for {
		tok, err := t.Token()
		if err != nil && cutErr(err) {
			return err // cut in the middle: not handled, not counted
		}
		if err != nil {
			break
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 && tok.Name.Space == stanza.NSDelay && tok.Name.Local == "delay" {
				g.delay = true
			}
			inBody = depth == 1 && tok.Name.Local == "body"
		case xml.EndElement:
			depth--
			inBody = false
		case xml.CharData:
			if inBody {
				g.body += string(tok)
			}
		}
		if depth < 0 {
			break
		}
	}
	srv.mu.Lock()
	if srv.refuse != nil && srv.refuse(g) {
		srv.mu.Unlock()
		sc.raw(`<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		sc.conn.closeWhenDrained()
		return nil
	}
	lost := srv.lose != nil && srv.lose(g.id)
	if !lost {
		if sc.smOn {
			srv.inH++
		}
		srv.got = append(srv.got, g)
	}
	cut := srv.cutAfter != nil && srv.cutAfter(g)
	srv.mu.Unlock()
	if cut {
		sc.conn.Close()
		return nil
	}
	if !lost && g.name == "iq" && (g.typ == "get" || g.typ == "set") {
		// Answer through the handler's encoder, or mellium answers too.
		srv.wmu.Lock()
		srv.mu.Lock()
		if sc.smOn {
			srv.outH++
			srv.sent = append(srv.sent, sentRec{seq: srv.outH, raw: fmt.Sprintf(`<iq type='result' id='%s'/>`, g.id)})
		}
		srv.mu.Unlock()
		err := t.EncodeToken(xml.StartElement{Name: xml.Name{Local: "iq"}, Attr: []xml.Attr{
			{Name: xml.Name{Local: "type"}, Value: "result"}, {Name: xml.Name{Local: "id"}, Value: g.id}}})
		if err == nil {
			err = t.EncodeToken(xml.EndElement{Name: xml.Name{Local: "iq"}})
		}
		srv.wmu.Unlock()
		return err
	}
	return nil
}

func (srv *fakeServer) enable(sc *srvConn, en stanza.Enable) {
	srv.wmu.Lock()
	defer srv.wmu.Unlock()
	srv.mu.Lock()
	srv.enables++
	var reply string
	if srv.enableFails {
		reply = `<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`
	} else {
		srv.nextID++
		srv.smID = fmt.Sprintf("sm-%d", srv.nextID)
		attrs := srv.enabledAttrs
		if attrs == "" {
			attrs = fmt.Sprintf(`id='%s' max='60' location='[2001:db8::1]:5222'`, srv.smID)
			if en.Resume {
				attrs += ` resume='true'`
			}
		}
		srv.resumable = strings.Contains(attrs, "resume=")
		reply = `<enabled xmlns='urn:xmpp:sm:3' ` + attrs + `/>`
		srv.inH, srv.outH = srv.base, srv.base
		srv.sent = nil
		sc.smOn = true
	}
	hold := srv.holdEnabled
	if hold {
		srv.heldEnabled, srv.heldOn = reply, sc
	}
	srv.mu.Unlock()
	if !hold {
		sc.writeLocked(reply)
	}
}

// releaseEnabled sends the answer to <enable/> that holdEnabled kept, and
// answers the next ones at once.
func (srv *fakeServer) releaseEnabled() {
	srv.mu.Lock()
	reply, sc := srv.heldEnabled, srv.heldOn
	srv.heldEnabled, srv.heldOn, srv.holdEnabled = "", nil, false
	srv.mu.Unlock()
	if sc != nil {
		sc.raw(reply)
	}
}

// snapshot returns a copy of what the server observed.
func (srv *fakeServer) snapshot() (gotten []got, rs int, acks []uint32, ackErrs []string) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return append([]got(nil), srv.got...), srv.rs, append([]uint32(nil), srv.acks...), append([]string(nil), srv.ackErrs...)
}

func (srv *fakeServer) ids() []string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var ids []string
	for _, g := range srv.got {
		ids = append(ids, g.id)
	}
	return ids
}

// testAuth is a client feature standing in for SASL: it authenticates and
// restarts the stream, so the tees see a stream restart.
func testAuth() xmpp.StreamFeature {
	return xmpp.StreamFeature{
		Name:       xml.Name{Space: nsTestAuth, Local: "auth"},
		Prohibited: xmpp.Authn,
		Parse: func(ctx context.Context, d *xml.Decoder, start *xml.StartElement) (bool, interface{}, error) {
			return true, nil, d.Skip()
		},
		Negotiate: func(ctx context.Context, s *xmpp.Session, data interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			w := s.TokenWriter()
			_, err := xmlstream.Copy(w, xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsTestAuth, Local: "auth"}}))
			if err == nil {
				err = w.Flush()
			}
			w.Close()
			if err != nil {
				return 0, nil, err
			}
			r := s.TokenReader()
			defer r.Close()
			d := xml.NewTokenDecoder(r)
			start, err := nextStart(d)
			if err != nil {
				return 0, nil, err
			}
			if start.Name.Local != "success" {
				return 0, nil, fmt.Errorf("auth failed: %v", start.Name)
			}
			if err := d.Skip(); err != nil {
				return 0, nil, err
			}
			return xmpp.Authn, s.Conn(), nil
		},
	}
}

// client is one client connection in a test.
type client struct {
	sess    *xmpp.Session
	conn    net.Conn
	sc      *srvConn
	cancel  context.CancelFunc
	served  chan struct{}
	serveEr error
}

// dial connects st to srv, runs Start and starts Serve with inner.
func dial(t testing.TB, srv *fakeServer, st *State, inner xmpp.Handler) (*client, error) {
	t.Helper()
	return dialVia(t, srv, st, inner, nil)
}

// dialVia is dial with the server's end of the link wrapped by wrap (nil:
// not wrapped).
func dialVia(t testing.TB, srv *fakeServer, st *State, inner xmpp.Handler, wrap func(net.Conn) net.Conn) (*client, error) {
	t.Helper()
	cc, sconn := net.Pipe()
	if wrap != nil {
		sconn = wrap(sconn)
	}
	if srv.clientWrap != nil {
		cc = srv.clientWrap(cc)
	}
	sc := srv.accept(sconn)
	in, out := st.Tees()
	ctx, cancel := context.WithCancel(context.Background())
	features := []xmpp.StreamFeature{testAuth(), st.BindOrResume(xmpp.BindResource())}
	state := xmpp.Secure
	if srv.tls != nil {
		features = append(features, xmpp.StartTLS(&tls.Config{InsecureSkipVerify: true}))
		state = 0
	}
	s, err := xmpp.NewSession(ctx, jid.MustParse(testDomain), jid.MustParse(testUser), cc, state,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{
				Features: features,
				TeeIn:    in,
				TeeOut:   out,
			}
		}))
	if err != nil {
		cancel()
		cc.Close()
		<-sc.done
		return nil, err
	}
	if err := st.Start(ctx, s); err != nil {
		cancel()
		cc.Close()
		<-sc.done
		return nil, err
	}
	c := &client{sess: s, conn: cc, sc: sc, cancel: cancel, served: make(chan struct{})}
	t.Cleanup(func() { // after a failed test: let the bubble end
		sc.conn.Close()
		cc.Close()
	})
	<-sc.ready
	go func() {
		defer close(c.served)
		c.serveEr = st.Serve(s, inner)
		cancel()
	}()
	return c, nil
}

// drop cuts the connection without closing the streams (a network
// failure) and waits until both sides noticed.
func (c *client) drop() {
	c.sc.conn.Close()
	c.conn.Close()
	<-c.served
	<-c.sc.done
}

// close ends the streams gracefully and waits for both sides.
func (c *client) close() {
	c.sess.Close()
	<-c.served
	<-c.sc.done
	c.conn.Close()
}

func mustDial(t testing.TB, srv *fakeServer, st *State, inner xmpp.Handler) *client {
	t.Helper()
	c, err := dial(t, srv, st, inner)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// sendMsg sends a chat message with the given id through Reserve.
func sendMsg(t testing.TB, st *State, s *xmpp.Session, id string) {
	t.Helper()
	ctx := context.Background()
	slot, err := st.Reserve(ctx)
	if err != nil {
		t.Fatalf("reserve: %v", err)
	}
	defer slot.Release()
	raw := fmt.Sprintf(`<message xmlns='jabber:client' to='peer@example.org' id='%s' type='chat'><body>hi %s</body></message>`, id, id)
	if err := s.Send(ctx, xml.NewDecoder(strings.NewReader(raw))); err != nil {
		t.Fatalf("send %s: %v", id, err)
	}
}

type (
	xmlstreamTRE = xmlstream.TokenReadEncoder
	xmlStart     = xml.StartElement
)

func attrOf(start *xml.StartElement, name string) string {
	for _, a := range start.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// plainSession is a bare mellium session, optionally with stream
// management (package sm used on its own), that sends untracked messages
// and counts what comes back.
type plainSession struct {
	s    *xmpp.Session
	st   *sm.State // nil without stream management
	tags *tagCounter
	n    int64     // messages this session sends
	pr   *progress // of the run

	receipts, markers, acked    atomic.Int64
	lastID                      atomic.Pointer[string] // id of the last message, once written
	rcptDone, seenDone, ackDone chan struct{}
	served                      chan error
	cancel                      context.CancelFunc
}

// dialPlain logs in to a plain session. withSM enables stream management.
func dialPlain(ctx context.Context, a *childArgs, account, password string, withSM bool, n int) (*plainSession, error) {
	j, err := jid.Parse(account)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := a.tlsConfig()
	if err != nil {
		return nil, err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return nil, err
	}
	p := &plainSession{
		tags: &tagCounter{}, n: int64(n), pr: &progress{},
		rcptDone: make(chan struct{}), seenDone: make(chan struct{}), ackDone: make(chan struct{}),
		served: make(chan error, 1),
	}
	var state xmpp.SessionState
	var features []xmpp.StreamFeature
	if tlsCfg == nil {
		state |= xmpp.Secure // loopback: SASL without TLS
	} else {
		features = append(features, xmpp.StartTLS(tlsCfg))
	}
	features = append(features, xmpp.SASL("", password, sasl.ScramSha1))
	bind := xmpp.BindResource()
	var in, out io.Writer
	out = p.tags
	if withSM {
		p.st = sm.New(sm.Config{OnAcked: p.onAcked})
		in, out = p.st.Tees()
		out = io.MultiWriter(out, p.tags)
		bind = p.st.BindOrResume(bind)
	}
	features = append(features, bind)
	s, err := xmpp.NewSession(ctx, j.Domain(), j, conn, state, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features, TeeIn: in, TeeOut: out}
		}))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("bench: login %s: %w", account, err)
	}
	p.s = s
	connCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	var h xmpp.Handler = xmpp.HandlerFunc(p.handle)
	if p.st != nil {
		if err := p.st.Start(connCtx, s); err != nil {
			p.close()
			return nil, err
		}
		go func() { p.served <- p.st.Serve(s, h) }()
	} else {
		go func() { p.served <- s.Serve(h) }()
	}
	// Available, like the tracked client, so that markers to our bare JID
	// are routed to us.
	if err := s.Send(ctx, xstanza.Presence{}.Wrap(nil)); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *plainSession) onAcked(s sm.Stanza) {
	if s.Name != "message" {
		return
	}
	p.pr.events.Add(1)
	if p.acked.Add(1) == p.n {
		close(p.ackDone)
	}
}

// handle counts the receipts and displayed markers in incoming messages.
func (p *plainSession) handle(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Local != "message" {
		return nil
	}
	for {
		tok, err := t.Token()
		if err != nil {
			return nil
		}
		el, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case el.Name.Local == "received" && el.Name.Space == stanza.NSReceipts:
			p.pr.events.Add(1)
			p.pr.lastRcpt.Store(time.Now().UnixNano() - p.pr.t0.Load())
			if p.receipts.Add(1) == p.n {
				close(p.rcptDone)
			}
		case el.Name.Local == "displayed" && el.Name.Space == stanza.NSMarkers:
			// A displayed marker covers every earlier message (XEP-0333):
			// all are seen once the last one is marked.
			p.pr.events.Add(1)
			p.markers.Add(1)
			if last := p.lastID.Load(); last != nil && attrValue(el.Attr, "id") == *last {
				close(p.seenDone)
			}
		}
		if err := xmlstream.Skip(t); err != nil {
			return nil
		}
	}
}

// send writes message i to the responder: the same stanza the tracked
// client writes (id, body, receipt request, markable, origin-id).
func (p *plainSession) send(ctx context.Context, to jid.JID, i int) error {
	if p.st != nil {
		room, err := p.st.Reserve(ctx)
		if err != nil {
			return err
		}
		defer room.Release() // after the write
	}
	id := randomID()
	if int64(i) == p.n-1 {
		p.lastID.Store(&id)
	}
	return p.s.Send(ctx, xstanza.Message{To: to, Type: xstanza.ChatMessage, ID: id}.Wrap(xmlstream.MultiReader(
		xmlstream.Wrap(xmlstream.Token(xml.CharData(body(i))), xml.StartElement{Name: xml.Name{Local: "body"}}),
		stanza.ReceiptRequest{}.TokenReader(),
		stanza.Markable{}.TokenReader(),
		stanza.OriginID{ID: id}.TokenReader(),
	)))
}

func (p *plainSession) close() {
	if p.st != nil && p.s != nil {
		// XEP-0198: a last <a/> before closing, so that the server does not
		// re-route what we received to a later session of the account.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p.st.SendAck(ctx, p.s)
		cancel()
	}
	if p.s != nil {
		p.s.Close()
		p.s.Conn().Close()
	}
	if p.cancel != nil {
		p.cancel()
	}
}

// attrValue returns the value of the attribute local, "" if none.
func attrValue(attrs []xml.Attr, local string) string {
	for _, a := range attrs {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// randomID returns 96 random bits in 16 URL-safe characters, like the
// tracked client's ids.
func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// runPlain sends n messages from each of the accounts in parallel (one for
// the plain sender, several for the ceiling) and waits for every receipt
// and marker (and, with stream management, every ack), or until they stop
// coming (the responder dropped some).
func runPlain(ctx context.Context, a *childArgs) result {
	res := result{N: a.n * len(a.jids), Senders: len(a.jids), SM: a.sm}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	to, err := jid.Parse(a.to)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	pr := &progress{}
	sessions := make([]*plainSession, len(a.jids))
	for i, account := range a.jids {
		if sessions[i], err = dialPlain(ctx, a, account, a.passwords[i], a.sm, a.n); err != nil {
			res.Error = err.Error()
			break
		}
		sessions[i].pr = pr
	}
	defer func() {
		for _, p := range sessions {
			if p != nil {
				p.close()
			}
		}
	}()
	if res.Error != "" {
		return res
	}
	for _, p := range sessions {
		p.tags.r.Store(0) // count the workload only
		p.tags.message.Store(0)
		p.tags.presence.Store(0)
		p.tags.iq.Store(0)
	}

	stopProfile := profile(a.cpuprofile)
	watch0 := watchedCPU(a.watch) // before cpu0: it scans /proc
	cpu0 := cpuNow()
	t0 := time.Now()
	pr.t0.Store(t0.UnixNano())
	var written atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(sessions))
	for _, p := range sessions {
		wg.Go(func() {
			for i := range a.n {
				if err := p.send(ctx, to, i); err != nil {
					errs <- err
					return
				}
			}
			storeMax(&written, int64(time.Since(t0)))
		})
	}
	var all sync.WaitGroup
	milestone := func(ch func(*plainSession) chan struct{}) *atomic.Int64 {
		at := &atomic.Int64{}
		all.Go(func() {
			for _, p := range sessions {
				select {
				case <-ch(p):
				case <-ctx.Done():
					return
				}
			}
			at.Store(int64(time.Since(t0)))
		})
		return at
	}
	toRecip := milestone(func(p *plainSession) chan struct{} { return p.rcptDone })
	seen := milestone(func(p *plainSession) chan struct{} { return p.seenDone })
	toServer := &atomic.Int64{}
	if a.sm {
		toServer = milestone(func(p *plainSession) chan struct{} { return p.ackDone })
	}
	complete := make(chan struct{})
	go func() {
		all.Wait()
		close(complete)
	}()
	wg.Wait()
	cpu := waitQuiet(ctx, complete, pr.events.Load) - cpu0
	stopProfile()
	close(errs)
	if err := <-errs; err != nil {
		res.Error = err.Error()
	}

	res.CPU = seconds(cpu)
	res.WatchCPU = watchedSince(a.watch, watch0)
	res.Written = seconds(time.Duration(written.Load()))
	res.ToServer = seconds(time.Duration(toServer.Load()))
	res.ToRecipient = seconds(time.Duration(toRecip.Load()))
	res.Seen = seconds(time.Duration(seen.Load()))
	res.LastRecip = seconds(time.Duration(pr.lastRcpt.Load()))
	for _, p := range sessions {
		res.CntServer += int(p.acked.Load())
		res.CntRecip += int(p.receipts.Load())
		res.CntSeen += int(p.markers.Load())
		res.RSent += int(p.tags.r.Load())
		res.Stanzas += int(p.tags.stanzas())
	}
	res.Complete = res.CntRecip == res.N && res.Seen > 0 && (!a.sm || res.CntServer == res.N)
	if !res.Complete && res.Error == "" {
		res.Error = fmt.Sprintf("incomplete: %d acked, %d receipts, %d markers of %d", res.CntServer, res.CntRecip, res.CntSeen, res.N)
	}
	return res
}

// progress is shared by the sessions of one run.
type progress struct {
	t0       atomic.Int64 // UnixNano of the first send
	lastRcpt atomic.Int64 // ns after t0 of the latest receipt
	events   atomic.Int64 // receipts, markers and acks so far
}

// quiet is how long a run may see no progress, once everything was
// written, before it ends incomplete: answers the responder dropped never
// come.
const quiet = 3 * time.Second

// waitQuiet waits until done is closed, ctx ends, or count stops changing
// for the quiet period (checked every 50 ms). It returns this process's
// CPU time at completion, or when it last saw a change, so that an
// incomplete run is not charged for the wait.
func waitQuiet(ctx context.Context, done <-chan struct{}, count func() int64) time.Duration {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, since, cpu := count(), time.Now(), cpuNow()
	for {
		select {
		case <-done:
			return cpuNow()
		case <-ctx.Done():
			return cpu
		case <-tick.C:
		}
		if c := count(); c != last {
			last, since, cpu = c, time.Now(), cpuNow()
		} else if time.Since(since) > quiet {
			return cpu
		}
	}
}

// storeMax sets v to x if x is larger.
func storeMax(v *atomic.Int64, x int64) {
	for {
		old := v.Load()
		if x <= old || v.CompareAndSwap(old, x) {
			return
		}
	}
}

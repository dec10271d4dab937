package xmpptrack

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/carbons"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/login"
	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// ErrClientClosed is returned by Send and friends once Close or Shutdown was called.
var ErrClientClosed = errors.New("xmpptrack: client closed")

// Client is one logged-in account that sends tracked messages. It keeps the
// connection up: when it drops, the client reconnects with backoff and
// resumes the stream, and trackers carry on across connections. It is safe
// for concurrent use.
type Client struct {
	cfg     Config
	account jid.JID
	self    string       // our bare JID
	login   login.Config // how to log in (without tees)
	log     *slog.Logger

	reg   *registry.Registry
	convs registry.ConvCache // Send's conversation keys
	raws  rawPool            // the buffers of Send's stanzas
	dur   *durable           // Config.Store; nil without one
	sm    *sm.State
	rcp   *recipient
	obs   observers
	ev    *events // runs the application's callbacks

	carbonsID atomic.Pointer[string] // id of the carbons <enable/> IQ of the current session
	dropped   atomic.Int64           // incoming stanzas dropped as unparsable
	// batching is set once the current connection calls its read hook
	// (login.Config.BeforeRead, see readIdle): the tap may then hold the
	// registry's callback wake-ups until the reader needs more input.
	batching atomic.Bool
	waits    atomic.Int32 // calls that may wait for the stream (see maxQueuedWaiting)

	// The archive check of ambiguous messages (archive.go).
	ambiguous atomic.Pointer[[]sm.Stanza]  // held back by the last resumption
	archive   atomic.Pointer[archiveQuery] // the query in flight, for the tap
	checking  chan struct{}                // closed when the first connection's check ended; nil if none (under mu)

	// publishHook, when set by a test, runs at the start of every publish
	// goroutine, before it looks at its connection.
	publishHook atomic.Pointer[func()]
	// carbonsHook, when set by a test, runs in publish between the write
	// of the carbons IQ and its record (carbonsWritten).
	carbonsHook atomic.Pointer[func()]
	// closeHook, when set by a test, runs in Close once it has looked at
	// the session, before it ends the connection loop.
	closeHook atomic.Pointer[func()]

	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	done    chan struct{}  // closed when the connection loop has ended
	workers sync.WaitGroup // every goroutine of the client; Close waits for them

	firstLoss chan error // why the first connection ended, for Dial

	mu       sync.Mutex
	session  *xmpp.Session // current session; nil while reconnecting
	up       chan struct{} // closed while a session is up; replaced when it drops
	gone     chan struct{} // closed when the current session drops
	closing  bool
	shutting bool
	// leaseGone: the store's lease was lost (see leaseLost): nothing
	// closes the stream gracefully any more, so that the process that
	// owns the account now can resume it.
	leaseGone bool
	// fresh: a connection bound a new session since the last one that was
	// published; a later resumption resumes that session, whose state
	// (carbons, room membership) was never set up.
	fresh bool
	// stream numbers the streams this client bound: each fresh bind
	// starts the next (0 is a stream resumed from the store, taken to have
	// carbons enabled by its own process: one killed between storing the
	// new stream and writing the IQ leaves it without, until a fresh
	// bind). carbonsOn is the stream on which the
	// carbons IQ was written (it is retransmitted with it on resumption,
	// so not written again). A connection carries its stream (conn.stream),
	// so that a publish that outlived its connection cannot mark a newer
	// stream.
	stream, carbonsOn uint64
	err               error // why the connection loop ended
	// graceful is the session Close closes gracefully, within closeGrace.
	graceful *xmpp.Session
	// downSince and upSince: when the last published session dropped,
	// and when the current one was published (see wasDown).
	downSince, upSince time.Time
	// Counters for Stats.
	connections, resumptions int
	// firstUp: the connection Dial opened was handed out (see waitFirst).
	firstUp bool
}

// Dial logs in to the account with the password and returns a Client once
// its first connection was handed to senders: stream management enabled
// (Dial waits for the server's <enabled/>, unless the server does not offer
// stream management or refuses it), initial presence sent, and carbons
// requested (the IQ written, its answer not awaited). Errors from this
// first connection are returned (and only from it, whatever a
// reconnection did meanwhile): an authentication failure matches ErrAuth,
// a server we cannot reach or talk to (including one that hangs up before
// <enabled/>) matches ErrConnect, with the cause reachable. ctx bounds
// every step: if it ends first, Dial returns an error matching its error
// (and ErrConnect for a deadline), after closing what it opened. Later
// connection losses are handled by reconnecting; the first connection may
// have been lost already when Dial returns: the client is then
// reconnecting (Stats().Connected is false, and Send and Session wait for
// the next connection), or, if that failed for good (a changed password),
// stopped, as Done and Err report. cfg may be nil.
//
// With Config.Store, Dial returns once the stream's state (what a
// successor needs to resume it) is recorded, or after 1 s, logging at Warn
// that it is not (a store that is slow, down or refuses it). With a store
// holding a previous process's stream, Dial resumes it, and returns only
// once the messages its resumption held back were looked up in the
// account's archive (at most 10 s) and what the connection settled was
// recorded too; see the package documentation.
// If ctx ends during the lookup, Dial returns the client all the same (its
// stream is resumed; failing would end it): the lookup goes on, and a held
// message written again may then follow messages sent meanwhile.
func Dial(ctx context.Context, account jid.JID, password string, cfg *Config) (*Client, error) {
	c := &Client{account: account, self: account.Bare().String()}
	if cfg != nil {
		c.cfg = *cfg
	}
	c.login = loginConfig(account, password, &c.cfg)
	c.log = c.cfg.logger()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.done = make(chan struct{})
	c.firstLoss = make(chan error, 1)
	c.up = make(chan struct{})
	onChange := c.cfg.OnStateChange
	var onMade func(*tracking.MessageTracker, tracking.MessageState, tracking.MessageState, *tracking.Response)
	if c.cfg.Store != nil {
		var err error
		if c.dur, err = openDurable(ctx, c.cfg.Store, account, c.cfg.Logger); err != nil {
			c.cancel()
			return nil, err
		}
		onMade, onChange = c.dur.hooks(onChange)
		// A lease lost while Dial runs ends its waits and its login at
		// once: a resumption from here could take the stream from the
		// new owner.
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-c.dur.lease.Lost():
				cancel()
			case <-lctx.Done():
			}
		}()
		ctx = lctx
	}
	c.reg = registry.New(registry.Config{
		MaxPending:    c.cfg.MaxPending,
		Window:        c.cfg.Window,
		OnStateChange: onChange,
		OnMade:        onMade,
	})
	smCfg := c.cfg.StreamManagement
	smCfg.OnWritten = c.written(smCfg.OnWritten)
	smCfg.OnAcked = c.acked(smCfg.OnAcked)
	smCfg.OnLost = c.lost(smCfg.OnLost)
	smCfg.OnRefused = c.refused(smCfg.OnRefused)
	if c.dur != nil {
		smCfg.Handled = c.dur.handled(smCfg.Handled)
		smCfg.OnAmbiguous = c.onAmbiguous // see archive.go
	}
	smCfg.Handled = c.releaseBeforeAnswer(smCfg.Handled)
	if smCfg.Logger == nil {
		smCfg.Logger = c.cfg.Logger
	}
	c.sm = sm.New(smCfg)
	c.rcp = newRecipient(c)
	c.ev = newEvents()
	c.ev.waiting = func() bool { return c.waits.Load() > 0 }
	c.ev.idle = c.reg.Release
	var prev store.Session // the stream-management state the store had
	if c.dur != nil {
		// Before the first connection: it resumes the stored stream.
		if err := c.reload(ctx); err != nil {
			if c.dur.lostLease() {
				err = ErrLeaseLost // its end cut the reading short
			}
			c.abandon()
			return nil, err
		}
		prev = c.dur.last // before the recorder may change it
		c.dur.client.Store(c)
		if c.dur.lostLease() {
			c.abandon()
			return nil, ErrLeaseLost
		}
	}

	// Whether a stored stream is to be resumed, asked before connecting: a
	// refused resumption clears it.
	stored := c.dur != nil && c.sm.Resumption().ID != ""
	if stored {
		c.settle(ctx, prev.Updated, prev.Outbound-prev.Acked)
	}
	conn, err := c.connect(ctx)
	for retry := 0; err != nil && stored && retry < resumeRetries && !errors.Is(err, ErrAuth) &&
		ctx.Err() == nil && c.sm.Resumption().ID != ""; retry++ {
		// The connection broke while the stored stream was being resumed
		// (a hang-up on <resume/>, a reset during the retransmissions):
		// resume again after a short back-off. A server that still holds
		// the stream answers with the count it got, so nothing is written
		// twice; one that dropped it answers <failed/> (Prosody with the
		// count, which settles what it got) and the connection binds.
		c.log.Info("xmpptrack: resuming the stored stream failed; trying again", "err", err)
		t := time.NewTimer(resumeBackoff << retry)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		conn, err = c.connect(ctx)
	}
	if err != nil && stored && !errors.Is(err, ErrAuth) && ctx.Err() == nil {
		// The stored stream's resumption keeps breaking the connection:
		// bind a new stream, and let the Policy re-send the
		// unacknowledged messages.
		c.log.Info("xmpptrack: resuming the stored stream failed; binding a new one", "err", err)
		c.sm.Forget()
		conn, err = c.connect(ctx)
	}
	if err != nil {
		if c.dur != nil && c.dur.lostLease() {
			err = ErrLeaseLost // the connection was cut for it
		}
		c.abandon()
		return nil, err
	}
	go c.ev.run() // not a worker: Close may be called from a callback
	c.workers.Go(c.rcp.run)
	conn.first = true
	c.workers.Go(func() { c.loop(conn) })
	// Start only wrote <enable/>: the loop's Serve processes the answer,
	// then publish hands the session out.
	if c.cfg.beforeWait != nil {
		c.cfg.beforeWait(c)
	}
	err = c.waitFirst(ctx)
	if err == nil {
		// Messages a resumption held back are looked up in the archive
		// first, so that those written again precede anything new. Only
		// here: on a later connection (this one was lost before its check
		// ended, and the next resumption holds the rest back again) the
		// session is handed out during the check, and a message written
		// again may follow messages sent meanwhile (see archive.go).
		c.mu.Lock()
		checking := c.checking
		c.mu.Unlock()
		if checking != nil {
			select {
			case <-checking:
			case <-ctx.Done():
				// The check goes on (see Dial).
			}
		}
	}
	if err == nil && c.dur != nil {
		// The stream's state, and what the first connection settled (the
		// messages the server's h acknowledged, those the archive check
		// settled), are committed before Dial returns. A process killed
		// right after it would otherwise leave a successor without the
		// stream to resume (the server keeps what it sent to that stream
		// until the stream times out) and the settled messages
		// IN_TRANSIT, to be sent again when the stream cannot be resumed
		// (Prosody drops a session whose resumed stream failed). The wait
		// has its own bound: Dial returns the client even when ctx ended
		// during the archive check.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dialFlush)
		c.dur.saveSessionNow(fctx)
		cancel()
		if !c.dur.streamSaved() {
			args := []any{"wait", dialFlush}
			if p := c.dur.failure.Load(); p != nil {
				args = append(args, "err", *p)
			}
			c.log.Warn("xmpptrack: the stream's state is not recorded yet; a process killed before the store takes it leaves no stream to resume", args...)
		}
	}
	if c.dur != nil && c.dur.lostLease() {
		// Lost before the recorder knew the client (see durable.leaseLost),
		// or after (the connection then ended for it): either way not a
		// client to hand out, and the reason whatever else failed.
		c.leaseLost()
		err = ErrLeaseLost
	}
	if err != nil && !errors.Is(err, sm.ErrConnEnded) && !errors.Is(err, ErrLeaseLost) && ctx.Err() != nil {
		err = fmt.Errorf("the session was not ready in time: %w", ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, c.login.Failed(ctx, err)
	}
	return c, nil
}

// abandon ends a client whose Dial fails before its connection loop
// started: as Close does, the trackers it made end CLOSED in this process
// only (with a store, the re-loaded messages stay pending in the record
// for the next Dial, not settled CLOSED), and the store's lease is
// released.
func (c *Client) abandon() {
	c.cancel()
	c.mu.Lock()
	c.setClosing()
	c.mu.Unlock()
	c.reg.Close()
	if c.dur != nil {
		c.dur.close()
	}
}

// resumeSettle is how long Dial waits before it resumes the stream of a
// process that saved its stream-management state within the last
// recentSave (one killed a moment ago), and settlePerStanza what it adds
// for each stanza that process had written and not had acknowledged (at
// most maxSettle in all).
// ejabberd 23.01 answers <resume/> with the count of stanzas the killed
// connection's session had handled when it handed the session over, while
// that session goes on routing what it had already read from the dead
// connection: those stanzas reach their recipients, are not counted in
// <resumed h>, are retransmitted, and arrive twice (seen in its debug log:
// the old session received m0588…m0593 after the <resume/>, the new one
// answered h=590 and got them again). Resuming once the server has worked
// off the dead connection's input gets an h that counts them all; that
// input is at most the stanzas in flight, which the server works off in
// well under a second on an idle machine.
const (
	resumeSettle    = time.Second
	settlePerStanza = 5 * time.Millisecond
	maxSettle       = 3 * time.Second
	recentSave      = 10 * time.Second
)

// dialFlush bounds how long Dial waits for the store to record the
// stream's state and what the first connection settled (see Dial).
const dialFlush = time.Second

// resumeRetries and resumeBackoff: how often, and after what first wait
// (doubling), Dial resumes a stored stream again when the attempt broke
// the connection, before it binds a new stream instead.
const (
	resumeRetries = 2
	resumeBackoff = 500 * time.Millisecond
)

// settle waits, before a stored stream is resumed, until the server has
// had time to finish with the previous process's connection (see
// resumeSettle), or ctx ends. saved is when that process last saved the
// stream-management state, inFlight how many stanzas it had written that
// the server had not acknowledged. The moment that process died is not
// known (its last save may lag its last write when the store is slow), so
// the wait counts from now when it saved within the last recentSave, and
// not at all otherwise (an idle predecessor left nothing in flight that
// recently).
func (c *Client) settle(ctx context.Context, saved time.Time, inFlight uint32) {
	if saved.IsZero() || time.Since(saved) > recentSave {
		return
	}
	wait := min(resumeSettle+time.Duration(inFlight)*settlePerStanza, maxSettle)
	c.log.Debug("xmpptrack: letting the server finish with the previous process's connection", "wait", wait, "in_flight", inFlight)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// written gives each message, in wire order, its position in its
// conversation (a displayed marker covers the messages written before the
// marked one; with concurrent senders that is not the order of Send calls)
// and lets durable tracking record its number. It runs on the writing
// goroutine inside mellium's output lock: it only takes short locks that
// are never held while writing.
func (c *Client) written(next func(sm.Stanza)) func(sm.Stanza) {
	return func(s sm.Stanza) {
		if s.Name == "message" && s.ID != "" {
			c.reg.WrittenTo(s.To, s.ID)
		}
		if c.dur != nil {
			c.dur.onWritten(s)
		}
		if next != nil {
			next(s)
		}
	}
}

// acked turns stream-management acks of our messages into DeliveredToServer.
func (c *Client) acked(next func(sm.Stanza)) func(sm.Stanza) {
	return func(s sm.Stanza) {
		if s.Name == "message" {
			c.reg.ServerAckTo(s.To, s.ID)
		}
		if next != nil {
			next(s)
		}
	}
}

// lost turns messages that stream management gave up on into Aborted.
func (c *Client) lost(next func(sm.Stanza)) func(sm.Stanza) {
	return func(s sm.Stanza) {
		if s.Name == "message" {
			c.lostMessage(s.To, s.ID)
		}
		if next != nil {
			next(s)
		}
	}
}

// conn is one connection: its session, and the context of the goroutines
// that serve it (the stream-management ack requester, publish).
type conn struct {
	s       *xmpp.Session
	ctx     context.Context
	cancel  context.CancelFunc
	resumed bool
	first   bool   // the connection Dial opened
	stream  uint64 // the stream it serves (see Client.stream)
}

// connect opens one session: dial, TLS, SASL, resume or bind, then stream
// management and presence. The session is handed to senders by publish.
func (c *Client) connect(ctx context.Context) (conn, error) {
	lc := c.login
	lc.TeeIn, lc.TeeOut = c.sm.Tees()
	if c.dur != nil {
		c.dur.newConn()
	}
	c.ambiguous.Store(nil) // this connection's resumption says what it holds back
	lc.WrapBind = c.sm.BindOrResume
	c.batching.Store(false)
	// With a store too: an inbound stanza counts as finished only once the
	// changes it made were recorded (durable.inbound), so holding their
	// callbacks holds the stanza's count, never more.
	lc.BeforeRead = c.readIdle
	s, err := login.Dial(ctx, lc)
	if err != nil {
		return conn{}, err
	}
	connCtx, cancel := context.WithCancel(c.ctx)
	// ctx bounds the rest as it bounded the login: a write the server
	// does not read fails when it ends.
	stop := context.AfterFunc(ctx, func() { s.Conn().Close() })
	fail := func(err error) (conn, error) {
		stop()
		cancel()
		s.Close()
		s.Conn().Close()
		return conn{}, c.login.Failed(ctx, err)
	}
	if err := c.sm.Start(connCtx, s); err != nil {
		return fail(err)
	}
	resumed := c.sm.Resumed()
	if resumed {
		if err := c.voidHeld(ctx); err != nil {
			// Cut, not closed: </stream:stream> would end the server's
			// session, which the next connection resumes to check them.
			s.Conn().Close()
			return fail(err)
		}
	}
	stream := c.streamFor(resumed)
	if !resumed {
		// A fresh session: be available, so that markers and receipts sent
		// to our bare JID reach us.
		if _, err := wire.Write(ctx, s, xstanza.Presence{}.Wrap(nil)); err != nil {
			return fail(err)
		}
	}
	if !stop() {
		return fail(ctx.Err())
	}
	return conn{s: s, ctx: connCtx, cancel: cancel, resumed: resumed, stream: stream}, nil
}

// streamFor returns the stream a new connection serves: a fresh bind
// starts the next one, a resumption serves the current one.
func (c *Client) streamFor(resumed bool) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !resumed {
		c.fresh = true
		c.stream++
	}
	return c.stream
}

// carbonsDueLocked reports whether publish of cn writes the carbons IQ:
// cn's stream is the current one, one this client bound, and its IQ was
// not written yet (a fresh stream whose connection ended before its
// hand-out, and that the next connection resumed, has it already: a
// second one would leave the first one's answer unrecognised). c.mu is
// held.
func (c *Client) carbonsDueLocked(cn conn) bool {
	return !c.cfg.NoCarbons && cn.stream != 0 && cn.stream == c.stream && c.carbonsOn != cn.stream
}

// carbonsWritten records that cn wrote the carbons IQ, unless a newer
// stream was bound meanwhile (publish may outlive its connection: the loop
// does not wait for it before it connects again).
func (c *Client) carbonsWritten(cn conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cn.stream == c.stream {
		c.carbonsOn = cn.stream
	}
}

// publish hands the connection to senders once the server answered
// <enable/>: a message written earlier would go out ahead of the lost
// stream's re-sends, and could not be resumed if the connection broke
// before the answer. It runs on its own goroutine, since the answer is
// processed by Serve; if the connection ends first, it does nothing.
func (c *Client) publish(cn conn) {
	if err := c.sm.WaitEnabled(cn.ctx); err != nil && !errors.Is(err, sm.ErrNotEnabled) {
		return
	}
	c.mu.Lock()
	carbons := c.carbonsDueLocked(cn)
	gone := cn.ctx.Err() != nil || c.closing
	c.mu.Unlock()
	if gone {
		return
	}
	if carbons && c.enableCarbons(cn) {
		// Before the session goes to senders: Dial returns, and the
		// application writes, after it (so its place in the queue of
		// unacknowledged stanzas is taken before any of theirs).
		if hook := c.carbonsHook.Load(); hook != nil {
			(*hook)()
		}
		c.carbonsWritten(cn)
	}
	c.mu.Lock()
	// Not when the loop is done with it (it cancels, then locks), nor once
	// Close looked for a session to close gracefully and found none: cut
	// then drops this one at once, instead of bounding it by closeGrace
	// with nobody closing its stream.
	if cn.ctx.Err() != nil || c.closing {
		c.mu.Unlock()
		return
	}
	c.firstUp = c.firstUp || cn.first
	resumed := cn.resumed && !c.fresh
	c.fresh = false
	c.connections++
	if resumed {
		c.resumptions++
	} else if c.rcp != nil {
		c.rcp.forgetOccupants() // out of every room meanwhile: nicks may have changed hands
	}
	// Observers first, in order with the disconnection that the loop
	// queues once it has taken the session back.
	for _, o := range c.obs.get() {
		if o.Connected != nil {
			c.ev.push(func() { o.Connected(resumed) })
		}
	}
	c.session = cn.s
	c.upSince = time.Now()
	if done := c.startArchiveCheck(cn); done != nil && c.connections == 1 {
		c.checking = done // Dial waits for it
	}
	if c.dur != nil {
		c.dur.saveNow() // the store gets the new stream's state now, not at the next tick
	}
	c.gone = make(chan struct{})
	close(c.up)
	c.mu.Unlock()
	c.log.Debug("xmpptrack: connected", "jid", cn.s.LocalAddr().String(), "resumed", resumed)
}

// enableCarbons turns on XEP-0280 for a fresh session, and reports
// whether the IQ was written; publish calls it before it hands the
// session to senders. It writes the IQ
// itself (never handing mellium a context, see internal/wire) and does not
// wait for the answer, which the tap takes out of the stream: nothing is
// left waiting once the connection ends.
func (c *Client) enableCarbons(cn conn) (written bool) {
	id := NewID()
	c.carbonsID.Store(&id)
	iq := xstanza.IQ{ID: id, Type: xstanza.SetIQ}.Wrap(xmlstream.Wrap(nil,
		xml.StartElement{Name: xml.Name{Space: carbons.NS, Local: "enable"}}))
	n, err := wire.Write(cn.ctx, cn.s, iq)
	if err != nil {
		c.log.Debug("xmpptrack: carbons not enabled", "err", err)
	}
	return n == 1
}

// readIdle is the read hook of a connection (login.Config.BeforeRead): the
// reader has worked through everything it read and asks the connection for
// more, so the state changes the tap applied meanwhile go to the
// callbacks with one wake-up (see registry.Registry.Hold).
func (c *Client) readIdle() {
	c.reg.Release()
	if !c.batching.Load() {
		c.batching.Store(true)
	}
}

// releaseBeforeAnswer wraps sm.Config.Handled, which the reader calls when
// it answers the server's <r/>, just before it writes the <a/>: the state
// changes it held (see readIdle) go to the callbacks first, since that
// write may wait, for the output (a sender holds it) or for room in the
// send buffer (a server slow to read), and they would wait with it, until
// the registry's linger tick. (The other callers of Handled, rare, only end
// the hold early.)
func (c *Client) releaseBeforeAnswer(next func(uint32) uint32) func(uint32) uint32 {
	return func(received uint32) uint32 {
		c.reg.Release()
		if next != nil {
			return next(received)
		}
		return received
	}
}

// loop serves the session and reconnects until Close, or until a
// reconnection fails for good (for example the password no longer works).
func (c *Client) loop(cn conn) {
	defer close(c.done)
	lo, hi := c.cfg.backoff()
	handler := c.tap(c.cfg.Handler)
	if c.dur != nil {
		handler = c.dur.inbound(handler)
	}
	var prev chan struct{} // closed once the previous connection's publish returned
	for {
		cur := cn // the publish goroutine must not see the next connection
		// One publish at a time, in connection order: a resumed stream's
		// publish decides on the carbons IQ once the previous one knows
		// whether its write of it went through. The wait is short: the
		// previous connection was cancelled, which ends its waits and
		// writes.
		before, done := prev, make(chan struct{})
		prev = done
		c.workers.Go(func() {
			defer close(done)
			if before != nil {
				<-before
			}
			if hook := c.publishHook.Load(); hook != nil {
				(*hook)()
			}
			c.publish(cur)
		})
		stop := context.AfterFunc(c.ctx, func() { c.cut(cur) })
		err := c.sm.Serve(cn.s, dropOnError(cn, handler))
		c.reg.Release() // the reader is done with this connection
		stop()
		cn.cancel()
		// After cancel: once Dial has this, publish can no longer hand
		// the first connection out (see waitFirst).
		select {
		case c.firstLoss <- err:
		default:
		}
		c.mu.Lock()
		if c.session != nil { // published
			c.session = nil
			c.downSince = time.Now()
			c.up = make(chan struct{})
			close(c.gone)
			lossErr := err // err is reused by the reconnection below
			for _, o := range c.obs.get() {
				if o.Disconnected != nil {
					c.ev.push(func() { o.Disconnected(lossErr) })
				}
			}
		}
		closing := c.closing
		c.mu.Unlock()
		cn.s.Close()
		cn.s.Conn().Close()
		if closing {
			return
		}
		c.log.Debug("xmpptrack: connection lost", "err", err)
		wait := lo
		for attempt := 0; ; attempt++ {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(jitter(wait)):
			}
			ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
			cn, err = c.connect(ctx)
			cancel()
			if err == nil {
				break
			}
			if c.ctx.Err() != nil {
				// Close cut the attempt short: not a failure of the
				// account (Err stays nil, the stream stays resumable for
				// a store to save).
				return
			}
			if permanent(err) {
				c.fail(err)
				return
			}
			c.log.Debug("xmpptrack: reconnect failed", "attempt", attempt+1, "err", err)
			wait = min(2*wait, hi)
		}
	}
}

// permanent reports a reconnection failure that retrying cannot mend: the
// server refused the credentials. A temporary authentication failure (the
// server could not check them for now: temporary-auth-failure, its login
// backend down, say) is retried with backoff like a network failure.
func permanent(err error) bool {
	var ae *AuthError
	return errors.Is(err, ErrAuth) && !(errors.As(err, &ae) && ae.Temporary())
}

// cut bounds the end of a connection once Close was called. Close closes a
// published session gracefully within closeGrace (it set the deadline);
// one that never was (stream management not answered yet, say) is dropped
// at once: Serve would otherwise wait in a read that nothing bounds. No
// connection is published once Close looked (see publish).
func (c *Client) cut(cn conn) {
	c.mu.Lock()
	graceful := c.graceful == cn.s
	c.mu.Unlock()
	if !graceful {
		cn.s.Conn().Close()
	}
}

// dropOnError wraps the tap for one connection: when it fails (the stream
// broke under it), the TCP connection is closed before mellium sees the
// error. mellium would otherwise write a stream error and close the stream
// gracefully, which ends the server's session for good; a dropped
// connection leaves it resumable. Only Close ends a stream gracefully. (A
// read that fails between stanzas never reaches a handler: the login's
// connection closes itself then, see login.LostError.)
func dropOnError(cn conn, h xmpp.Handler) xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		err := h.HandleXMPP(t, start)
		if err != nil {
			cn.s.Conn().Close()
		}
		return err
	})
}

// fail ends the client after a permanent connection failure: messages the
// server never acknowledged are aborted, the rest keep their state.
func (c *Client) fail(err error) {
	c.log.Warn("xmpptrack: giving up reconnecting", "err", err)
	c.mu.Lock()
	c.err = err
	c.setClosing()
	c.mu.Unlock()
	c.sm.Abandon() // unacknowledged messages become Aborted through OnLost
	c.reg.Close()
}

// leaseLost stops the client when the store's lease was lost (see
// Config.Store): the store already refuses its commits. The connection is
// dropped, not closed with </stream:stream>, which would end the server's
// session for the process that owns the account now; the loop does not
// reconnect, and the pending trackers end CLOSED, as at Close, so that the
// store keeps them pending. Close, called later, finds the client stopped.
func (c *Client) leaseLost() {
	c.mu.Lock()
	if c.leaseGone {
		c.mu.Unlock()
		return
	}
	c.leaseGone = true
	closing := c.closing
	if !closing {
		c.err = ErrLeaseLost
		c.setClosing()
	}
	c.mu.Unlock()
	c.log.Error("xmpptrack: the store's lease of this account was lost; stopping the client", "account", c.self)
	if !closing {
		c.reg.Close()
	}
	c.cancel()
}

// jitter spreads reconnection attempts by up to a quarter of d.
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}

// Err returns why the client stopped reconnecting (nil while it runs or after Close).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done returns a channel closed when the client has stopped: after Close,
// Shutdown, or a permanent connection failure (see Err).
func (c *Client) Done() <-chan struct{} { return c.done }

// Session returns the current session for use with other mellium packages,
// waiting while the client reconnects. The session changes on reconnection;
// do not keep it. Never call its Serve method. It fails with ErrClientClosed
// once Close or Shutdown was called, and with ctx's error, matching
// stanza.ErrDisconnected as well, when ctx ends while it waits.
//
// A context given to the session's Send (or to mellium functions that send)
// should not end while other goroutines may write: mellium v0.23.0 can
// apply its end to the connection after Send returned, failing a concurrent
// write, and a write it cuts short leaves half a stanza on the stream.
// Client.Send and the client's receipts and markers never hand mellium a
// context.
func (c *Client) Session(ctx context.Context) (*xmpp.Session, error) {
	return c.waitSession(ctx, nil, false)
}

// waitSession returns the current session, waiting while the client
// reconnects, or while the current session is stale (one whose write
// failed: wire.Write closed it, and the loop is about to drop it). During
// Shutdown it fails with ErrClientClosed unless draining is set: the
// client's own writes (answers to peers, messages already tracked) go on
// while pending messages settle.
//
// Its errors are classified here: ctx's end while waiting (the client had
// no usable connection) matches stanza.ErrDisconnected as well as ctx's
// error, and ErrClientClosed carries Err's cause when a permanent failure
// stopped the client.
func (c *Client) waitSession(ctx context.Context, stale *xmpp.Session, draining bool) (*xmpp.Session, error) {
	for {
		c.mu.Lock()
		s, up, gone, closing := c.session, c.up, c.gone, c.closing || c.shutting && !draining
		c.mu.Unlock()
		wait := up
		switch {
		case closing:
			return nil, c.closedError()
		case s != nil && s != stale:
			return s, nil
		case s != nil:
			wait = gone
		}
		select {
		case <-wait:
		case <-c.done:
			return nil, c.closedError()
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", stanza.ErrDisconnected, ctx.Err())
		}
	}
}

// waitFirst waits, for Dial, until the first connection was handed out to
// senders (publish), and returns nil then, also if it was lost since or the
// client stopped since: that loss is a later one, which the loop handles by
// reconnecting, and Done and Err report a permanent failure. If the first
// connection ended before it was handed out, the error matches
// sm.ErrConnEnded and wraps why it ended. Dial's outcome so depends on the
// first connection only, not on how soon Dial's goroutine looks: waiting
// for a live session (or for the current connection's <enabled/>) made Dial
// wait for a reconnection, and fail when ctx ended first, when the first
// connection was lost before that goroutine looked.
func (c *Client) waitFirst(ctx context.Context) error {
	c.mu.Lock()
	first, up := c.firstUp, c.up
	c.mu.Unlock()
	if first {
		return nil
	}
	// No case for c.done: the loop tells firstLoss before it can end, so
	// the first connection's own end is always there to report.
	select {
	case <-up:
		// Handed out: the first connection, or else a reconnection, and
		// then the first one ended before its hand-out and told firstLoss.
		if c.firstHandedOut() {
			return nil
		}
		return firstEnded(<-c.firstLoss)
	case lossErr := <-c.firstLoss:
		// The first connection is cancelled: publish has handed it out
		// by now, or never will.
		if c.firstHandedOut() {
			return nil
		}
		if c.ctx.Err() != nil {
			// Close began first (only a test's hook can call it before
			// Dial returns): publish refused the connection for that. (A
			// permanent failure of a reconnection does not end c.ctx.)
			return ErrClientClosed
		}
		return firstEnded(lossErr)
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", stanza.ErrDisconnected, ctx.Err())
	}
}

// firstHandedOut reports whether publish handed out the connection Dial
// opened.
func (c *Client) firstHandedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstUp
}

// firstEnded is Dial's error for a first connection that ended before it
// was handed out, with why it ended: Serve returns nil for a stream the
// server ended cleanly, which reads as the end of the input.
func firstEnded(err error) error {
	if err == nil {
		err = io.EOF
	}
	return fmt.Errorf("%w: %w", sm.ErrConnEnded, err)
}

// closedError is ErrClientClosed, with the reason when a permanent
// connection failure stopped the client.
func (c *Client) closedError() error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrClientClosed, err)
	}
	return ErrClientClosed
}

// wasDown reports whether the client had no usable connection at the
// moment at (not in the future): during the down time that is going on,
// or during the last one before the current connection. Earlier flaps are
// not remembered.
func (c *Client) wasDown(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil || c.closing {
		return !at.Before(c.downSince)
	}
	return !at.Before(c.downSince) && at.Before(c.upSince)
}

// Close ends the client promptly: pending trackers become Closed (or keep
// DeliveredToRecipient or Error), the stream is closed and the connection
// loop ends. It returns after that, once every goroutine the client started
// has returned, except that a callback running at that moment is left to
// finish on its own (Close may be called from a callback). Callbacks still
// queued are not run: without Config.Store, incoming stanzas the
// application had not seen yet were acknowledged to the server, so they
// are not delivered again. With a store, the final ack covers only the
// stanzas the store saved as finished (Close saves every stanza finished
// before it first, waiting at most half of its 2 s grace for the store):
// the server keeps the others for this account as undelivered (offline
// storage or its archive, depending on the server). A reconnection not yet
// handed out to senders when Close is called is dropped at once, its
// stream not closed: the server keeps that session until it times out, as
// after a lost connection, and what the client read on it (a resumed
// stream's re-sent stanzas, say) is not acknowledged, so the server may
// deliver it again.
func (c *Client) Close() error {
	c.mu.Lock()
	c.setClosing()
	s := c.session
	if c.leaseGone {
		s = nil // dropped, not closed: see leaseLost
	}
	c.graceful = s
	c.mu.Unlock()
	if hook := c.closeHook.Load(); hook != nil {
		(*hook)()
	}
	c.reg.Close()
	if s != nil {
		c.closeGracefully(s)
	}
	c.cancel()
	<-c.done
	c.workers.Wait()
	c.sm.Wait()
	if n := c.ev.stop(); n > 0 {
		c.log.Debug("xmpptrack: closed with callbacks not run", "count", n)
	}
	c.ev.wait()
	if c.dur != nil {
		c.dur.close()
	}
	return nil
}

// setClosing notes that Close (or a permanent failure) is closing the
// client (under c.mu): with a store, the CLOSED changes made from now on
// are not recorded (see durable.made).
func (c *Client) setClosing() {
	c.closing = true
	if c.dur != nil {
		c.dur.closing.Store(true)
	}
}

// closeGrace bounds a graceful close: a peer that stops reading or never
// answers </stream:stream> cannot hold Close longer than this.
const closeGrace = 2 * time.Second

// closeGracefully acknowledges what the server sent (XEP-0198 recommends a
// final <a/>, so the server does not re-send it elsewhere) and closes the
// stream, waiting at most closeGrace for the server's answer.
func (c *Client) closeGracefully(s *xmpp.Session) {
	deadline := time.Now().Add(closeGrace)
	// Deadlines on the connection itself: mellium's SetCloseDeadline races
	// with a running Serve (it swaps a context without a lock).
	s.Conn().SetDeadline(deadline)
	if info := c.sm.Info(); info.Enabled {
		if c.dur != nil {
			// With Config.Store the ack covers only what the store saved
			// (see durable.handled): save the stanzas finished by now
			// first, within half the grace.
			ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-closeGrace/2))
			c.dur.saveSessionNow(ctx)
			cancel()
		}
		// A context that never ends (SendAck never hands it to mellium,
		// and one that ended could cut another goroutine's write still
		// under way): the deadline above bounds the write.
		c.sm.SendAck(context.Background(), s)
	}
	s.Close()
}

// Shutdown stops accepting new messages, waits until every pending tracker
// has settled (or ctx ends), then closes the client. On ctx expiry it closes
// anyway and returns ctx.Err().
func (c *Client) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.shutting = true
	c.mu.Unlock()
	c.waitBegin()
	err := c.reg.Shutdown(ctx)
	c.waitEnd()
	c.Close()
	return err
}

// deliveryError wraps a stanza error for a tracker's Response.
func deliveryError(e *xstanza.Error) error {
	if e == nil {
		return stanza.Classify(xstanza.Error{Condition: xstanza.UndefinedCondition})
	}
	return stanza.Classify(*e)
}

// Stats is a snapshot of a client's health, as returned by Client.Stats.
type Stats struct {
	// Pending counts the trackers that are not settled (see
	// Config.MaxPending).
	Pending int
	// Unacked counts the stanzas written that the server has not
	// acknowledged yet (XEP-0198), including those waiting to be re-sent.
	Unacked int
	// Connected reports whether a session is up now.
	Connected bool
	// Reconnections counts the connections that went live (stream
	// management up, session handed to senders) after the first, and
	// Resumptions those of them that resumed the stream, keeping the
	// server-side session (and its room memberships) alive.
	Reconnections, Resumptions int
	// Dropped counts the incoming stanzas dropped because an address in
	// them does not parse (see Config.Handler).
	Dropped int64
	// StoreErr is Config.Store's last failure: a message Send could not
	// write ahead (ErrNotRecorded), or state changes the client could not
	// commit (it keeps trying). Nil without a store, or once a write
	// succeeded again.
	StoreErr error
}

// Stats returns a snapshot of the client's health. It never blocks on the
// network.
func (c *Client) Stats() Stats {
	st := Stats{Pending: c.reg.Pending(), Unacked: c.sm.Info().Unacked, Dropped: c.dropped.Load()}
	if c.dur != nil {
		if p := c.dur.failure.Load(); p != nil {
			st.StoreErr = *p
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.Connected = c.session != nil && !c.closing
	st.Reconnections = max(c.connections-1, 0)
	st.Resumptions = c.resumptions
	return st
}

// Tracker returns the tracker of the pending message with the id (one that
// Send returned and that has not settled), or nil if there is none.
func (c *Client) Tracker(id string) *tracking.MessageTracker {
	return c.reg.Find(id)
}

// waitBegin and waitEnd bracket a call that may wait for what the stream
// brings (acks, receipts, markers): while one runs, the reader keeps
// reading past the usual bound of the callbacks' queue, since the call may
// come from a callback (see maxQueuedWaiting).
func (c *Client) waitBegin() {
	if c.waits.Add(1) == 1 {
		c.ev.nudge()
	}
}

func (c *Client) waitEnd() { c.waits.Add(-1) }

package sm

import (
	"io"
	"log/slog"

	"mellium.im/xmpp"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// conn is the part of the state that belongs to one connection: the two
// scanners fed by the tees and the bookkeeping of the ack requester.
// Fields without a comment are guarded by st.mu.
type conn struct {
	st       *State
	in, out  *scanner // each used by one goroutine at a time (mellium's locks)
	wake     chan struct{}
	done     chan struct{} // closed by stop
	ready    chan struct{} // closed by setReadyLocked
	stopOnce sync.Once

	outActive atomic.Bool // outbound stanzas are counted and queued
	lastToRaw string      // to attribute of the last outbound stanza as written, and
	lastTo    string      // decoded; both used under mellium's output lock only

	outSeen      bool // the outbound scanner saw our stream header
	started      bool // Start was called
	resumed      bool // the connection resumed the stream
	inActive     bool // inbound stanzas are counted
	enableOut    bool // <enable/> was written or is being written (see answerLocked)
	resumeOut    bool // <resume/> was written or is being written
	enableIn     bool // the inbound scanner saw the answer to <enable/>
	resumeIn     bool // the inbound scanner saw the answer to <resume/>
	enabling     bool // <enable/> was written or is being written, and the handler has not processed its answer
	smOn         bool // <enabled/> or <resumed/> arrived: acks may be requested
	refused      bool // the server answered <enable/> with <failed/>
	held         bool // Start left st.orphans to re-send for the answer to <enable/>
	readyErr     error
	isReady      bool // ready is closed; readyErr is WaitEnabled's result
	copying      bool // copyOf is being written again (re-send or retransmission)
	copySeen     bool // the outbound scanner queued that copy
	copyOrphan   bool // copyOf is st.orphans[0], which the scanner drops when it queues the copy
	copyHeld     bool // copyOf is st.held[0], which the scanner drops when it queues the copy
	copyOf       entry
	snaps        []uint32
	snapHead     int
	sinceReq     int             // stanzas written since the last <r/>
	lone         bool            // the first of them found nothing unacknowledged in flight: request at once
	uncovered    int64           // Unix ns when the oldest of them was written
	rSent        uint64          // <r/> booked by the requester (rOut of them written, the rest being written)
	rOut         uint64          // <r/> written: their bytes handed to the connection
	aRecv        uint64          // <a/> received, at most rSent
	rAt          int64           // Unix ns when an <r/> was written with no other written one unanswered, until its answer (RTT sample)
	tOrd         uint64          // the <r/> (its rOut) timed for the default window: written while no other was timed; 0: none
	tAt          int64           // Unix ns when it was written
	tN           int             // stanzas in flight then
	rWait        int64           // Unix ns since when an answer to a written <r/> is awaited with no <a/> that made progress (see handleAck); 0: none
	need         uint32          // stanzas written before our last <r/>, which its answer covers (see needLocked)
	needOK       bool            // need is set
	inAt         int64           // Unix ns when the inbound scanner last read a stanza (a sign of life, see deadlineLocked); 0: none
	bookAt       int64           // Unix ns when the request (<r/> or <enable/>) being written was booked; 0: none
	sock         syscall.RawConn // the TCP socket under the session, for progressLocked; nil: none known
	progOK       bool            // progAcked and progAt are set for the request being written
	progAcked    uint64          // the socket's bytes acknowledged by the peer at progAt
	progAt       int64           // Unix ns of the last look that found progress
	lookAt       int64           // Unix ns of the last look
	markFor      int64           // the sinceLocked value mark belongs to; 0: none
	mark         uint64          // at the first look for markFor: bytes acknowledged plus those the kernel held (the awaited request's bytes end at or before it)
	markAt       int64           // Unix ns of the first look that found mark acknowledged: the server's TCP holds the request; 0: not yet
	rMark        uint64          // bytes acknowledged plus those the kernel held right after the last <r/> was written
	rMarkOK      bool            // rMark was read
	pendFor      int64           // the sinceLocked value for which a periodic look (never the write itself) saw bytes of ours held by the kernel; 0: none
	enableAt     int64           // Unix ns when <enable/> was written
	lastAct      int64           // Unix ns of the last <r/> sent or <a/> received (idle probe)
	gotAck       bool            // an <a/> that made progress (not stale, see handleAck) arrived on this connection
	failedResume bool            // a failed resumption (see "Failed resumptions"): the session was dropped
	sess         *xmpp.Session   // set by Start; the watchdog expires its deadlines
	watch        *time.Timer     // the watchdog (armLocked); created stopped, never replaced
	watchArmed   bool
	watchAt      int64           // Unix ns the armed watchdog fires
	careful      bool            // re-send the held messages one at a time (after a policy violation)
	carefulOn    uint64          // ord of the held message last re-sent carefully
	fatal        error           // stream management error that ends the connection
	peerErr      error           // the <stream:error/> the server sent, a stream.Error
	ended        bool            // State.Serve returned
	nd           syscall.RawConn // the socket coalescing sets TCP_NODELAY on; nil: none, or setting it failed (see coalesceLocked)
	nagle        bool            // Nagle's algorithm is on for nd; never true with nd nil
}

// Tees returns fresh writers for the StreamConfig.TeeIn and TeeOut of the
// next connection. mellium copies every byte read from and written to the
// stream into them, above TLS, including across stream restarts. They count
// stanzas and capture outbound stanzas for re-sending; they never block,
// and only the inbound one fails, once the server exceeds an input limit
// (see Config.MaxStanzaSize). They use the bytes given to Write only
// during the call, copying what they keep (a stanza for re-sending, the
// start of an element split across writes), so the caller may reuse its
// buffer once Write returns; an application tee combined with them must
// do the same, since the bytes are only valid during the call (mellium
// and this module's client reuse their buffers).
//
// Call Tees once per connection, before NewSession and after the previous
// connection's Serve returned, and give the same pair to every call of the
// StreamConfig function (if the application has its own tees, combine
// them with io.MultiWriter). Calling Tees again detaches the previous
// connection: its ack requester stops.
func (st *State) Tees() (in, out io.Writer) {
	c := &conn{
		st:    st,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		ready: make(chan struct{}),
	}
	c.watch = time.AfterFunc(time.Hour, c.watchdog)
	c.watch.Stop()
	c.in = newScanner((*inSink)(c), false)
	c.in.lim = limits{stanza: st.cfg.MaxStanzaSize, ws: st.cfg.MaxWhitespace, streamErr: st.cfg.MaxStreamErrorSize}
	c.out = newScanner((*outSink)(c), true)
	st.mu.Lock()
	received, resumable := st.inH, st.resumable && st.id != ""
	st.mu.Unlock()
	// From here on the inbound count is what a resumption claims (see
	// BindOrResume): the stanzas of the previous connection that
	// Config.Handled does not cover will be sent again.
	h := received
	if resumable {
		h = st.handled(received)
	}
	st.mu.Lock()
	old := st.conn
	st.conn = c
	st.read = 0
	st.win.newConn()
	if int32(h-st.toldH) < 0 {
		h = st.toldH
	}
	if st.inH == received {
		st.inH = h
	}
	st.mu.Unlock()
	if old != nil {
		old.stop()
	}
	return c.in, c.out
}

// stop ends the connection's ack requester.
func (c *conn) stop() {
	c.stopOnce.Do(func() {
		close(c.done)
		c.watch.Stop()
	})
}

// setReadyLocked records what WaitEnabled returns for the connection and
// wakes its callers; only the first call counts. The caller holds st.mu.
func (c *conn) setReadyLocked(err error) {
	if c.isReady {
		return
	}
	c.isReady, c.readyErr = true, err
	close(c.ready)
}

// signal wakes the ack requester without blocking.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// inSink receives inbound elements. It runs inside conn.Read, under
// mellium's input lock: it only updates counters.
type inSink conn

func (s *inSink) element(e *element) {
	c := (*conn)(s)
	st := c.st
	switch {
	case e.kind.isStanza():
		now := timeNow()
		st.mu.Lock()
		if c.inActive {
			st.inH++
			st.read++
		}
		c.inAt = now
		st.mu.Unlock()
	case e.kind == kindR:
		// The handler answers with the count at this point of the stream,
		// not with the count after the decoder's read-ahead.
		st.mu.Lock()
		if c.snapHead > 0 && c.snapHead == len(c.snaps) {
			c.snaps, c.snapHead = c.snaps[:0], 0
		}
		c.snaps = append(c.snaps, st.inH)
		st.mu.Unlock()
	case e.kind == kindEnabled:
		st.mu.Lock()
		if c.answerLocked(e.kind) {
			c.inActive = true
			st.inH = st.base
			st.toldH = st.base
		}
		st.mu.Unlock()
	case e.kind == kindResumed:
		st.mu.Lock()
		if c.answerLocked(e.kind) {
			c.inActive = true
		}
		st.mu.Unlock()
	case e.kind == kindFailed:
		st.mu.Lock()
		if c.answerLocked(e.kind) {
			c.inActive = false
		}
		st.mu.Unlock()
	case e.kind == kindStreamError:
		err := parseStreamError(e.raw)
		st.mu.Lock()
		c.peerErr = err
		c.streamErrorLocked(err)
		st.mu.Unlock()
	case e.kind == kindStreamEnd:
		c.stop()
	}
}

// answerLocked reports whether an inbound <enabled/>, <resumed/> or
// <failed/> (k) is the answer to our <resume/> or <enable/>, and records
// that the answer came: only that one element may start or stop the
// inbound count. One that answers nothing (none was written, or its answer
// came already) changes nothing; the handler logs and ignores it too. The
// request is marked written before its write (the answer may be read
// before the outbound scanner saw the request) and again by the outbound
// scanner (tees fed by hand). The caller holds st.mu.
func (c *conn) answerLocked(k kind) bool {
	switch {
	case c.resumeOut && !c.resumeIn && (k == kindResumed || k == kindFailed):
		c.resumeIn = true
		return true
	case c.enableOut && !c.enableIn && (k == kindEnabled || k == kindFailed):
		c.enableIn = true
		return true
	}
	return false
}

// limit records an input limit breach as the reason the connection ends.
func (s *inSink) limit(err *LimitError) {
	c := (*conn)(s)
	c.st.mu.Lock()
	if c.fatal == nil {
		c.fatal = err
	}
	c.st.mu.Unlock()
	c.stop()
	c.st.logAt(slog.LevelWarn, "sm: input limit exceeded; closing the connection", "what", err.What, "limit", err.Limit)
}

// popSnapshot returns h for the next inbound <r/>.
func (c *conn) popSnapshot() uint32 {
	st := c.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if c.snapHead < len(c.snaps) {
		h := c.snaps[c.snapHead]
		c.snapHead++
		return h
	}
	// Not seen by the scanner (cannot happen with mellium's tees): the live
	// count is still a count of stanzas the server did send.
	return st.inH
}

// outSink receives outbound elements. It runs inside conn.Write, under
// mellium's output lock: it only updates counters and the queue, and
// signals the requester without blocking.
type outSink conn

func (s *outSink) element(e *element) {
	c := (*conn)(s)
	st := c.st
	switch e.kind {
	case kindMessage, kindPresence, kindIQ:
		if !c.outActive.Load() {
			return
		}
		now := time.Now().UnixNano()
		ent := entry{
			kind: e.kind,
			sent: now,
			id:   attrString(e.id),
			to:   c.toString(e.to),
			raw:  append([]byte(nil), e.raw...),
		}
		st.mu.Lock()
		if !c.outActive.Load() {
			st.mu.Unlock()
			return
		}
		// Nothing unacknowledged and no <r/> in flight: the link is idle,
		// so the stanza's ack is requested at once (one round trip);
		// stanzas written behind unacknowledged ones are batched.
		idle := st.queue.len() == 0 && c.aRecv == c.rSent
		st.outH++
		ent.seq = st.outH
		if o := &c.copyOf; c.copying && !c.copySeen && ent.kind == o.kind && ent.id == o.id && ent.to == o.to {
			// A stanza written again keeps its place in the order of first
			// writes, and its time.
			ent.ord, ent.sent = o.ord, o.sent
			c.copySeen = true
			if c.copyOrphan && st.conn == c && len(st.orphans) > 0 && st.orphans[0].ord == o.ord {
				// In the same step: the next connection's Start may take
				// the queue and the orphans before the re-send returns.
				// (Once another connection took over, its Start may have
				// taken them already: the message stays, to be re-sent
				// again rather than lost.)
				st.orphans[0] = entry{}
				st.orphans = st.orphans[1:]
			}
			if c.copyHeld && st.conn == c && len(st.held) > 0 && st.held[0].ord == o.ord {
				// The same for a held stanza that ResolveAmbiguous writes
				// again: a resumption before its write returns would
				// retransmit the copy and announce it as held once more.
				st.held[0] = entry{}
				st.held = st.held[1:]
			}
		} else {
			st.ord++
			ent.ord = st.ord
		}
		st.queue.push(ent)
		if st.cfg.OnWritten != nil {
			// Under st.mu: a Resumption whose Sent covers this number is
			// taken after the report (a store saves every number up to it).
			st.cfg.OnWritten(ent.stanza())
		}
		c.sinceReq++
		c.coalesceLocked(st.queue.len())
		if c.sinceReq == 1 {
			c.uncovered = now
			c.lone = idle
		}
		wake := c.sinceReq == 1 || c.sinceReq == st.cfg.AckEvery
		st.mu.Unlock()
		if wake {
			c.signal()
		}
	case kindEnable:
		st.mu.Lock()
		// Start moved the stanzas of any earlier stream to the policy.
		st.outH, st.ackedH = st.base, st.base
		st.loose = false
		c.sinceReq, c.uncovered = 0, 0
		c.outActive.Store(true)
		c.enableOut = true
		st.mu.Unlock()
	case kindResume:
		st.mu.Lock()
		c.resumeOut = true
		st.mu.Unlock()
	case kindR:
		// Every stanza written before this <r/> is counted (one element
		// is written at a time, and this scanner sees each after its
		// bytes), and none after it: its answer covers this count. The
		// answer may be read before this runs, so the request's booking
		// set a lower bound already (see needLocked).
		if !c.outActive.Load() {
			return
		}
		st.mu.Lock()
		c.needLocked(st.outH)
		st.mu.Unlock()
	case kindStreamStart:
		st.mu.Lock()
		c.outSeen = true
		st.mu.Unlock()
	}
}

// limit never fires: the outbound scanner has no limits.
func (s *outSink) limit(*LimitError) {}

// toString is attrString for the to attribute of an outbound stanza,
// reusing the string of the previous stanza when it has the same bytes: a
// burst to one peer then allocates no address per stanza. It runs under
// mellium's output lock, as the outbound scanner does.
func (c *conn) toString(v []byte) string {
	if v == nil {
		return ""
	}
	if string(v) == c.lastToRaw {
		return c.lastTo
	}
	c.lastTo = attrString(v)
	c.lastToRaw = c.lastTo
	if len(v) != len(c.lastTo) || string(v) != c.lastTo {
		c.lastToRaw = string(v) // it had entities to decode
	}
	return c.lastTo
}

// attrString decodes a raw attribute value; "" when absent.
func attrString(v []byte) string {
	if v == nil {
		return ""
	}
	return string(unescape(nil, v))
}

package sm

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

func timeNow() int64 { return time.Now().UnixNano() }

// requester sends <r/> for one connection, following the policy of
// nextRequest, re-sends the messages Start held for the answer to
// <enable/> once the Handler processed it (a handler must not send on the
// session, so this happens here), and declares the connection dead when a
// request stays unanswered too long (see Config.AckTimeout). Start runs it
// on its own goroutine; it returns when ctx ends, when the connection is
// detached (Tees called again, input stream closed, fatal stream
// management error), when the server refused stream management, when a
// write fails, or when the connection is dead. Its writes go through
// internal/wire: a failed one closes the connection (the stream is
// broken), except one refused because the application closed the stream,
// which wrote nothing and leaves the closing handshake alone. It uses one
// timer, however many stanzas are written.
func (st *State) requester(ctx context.Context, s *xmpp.Session, c *conn) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		st.mu.Lock()
		resend := c.held && (c.smOn || c.refused)
		refused := c.refused
		careful := resend && c.careful && !refused
		if careful && st.unackedMessageLocked() {
			resend = false // one at a time: wait for the ack of the last one
		}
		st.mu.Unlock()
		if resend {
			max := 0
			if careful {
				max = 1
			}
			n, err := st.resendOrphans(ctx, s, c, !refused, max)
			if err != nil {
				st.logAt(slog.LevelDebug, "sm: re-send interrupted", "error", err)
				return
			}
			if careful && n > 0 {
				continue // more may follow, after the ack
			}
			st.mu.Lock()
			c.held = false
			if refused {
				c.setReadyLocked(ErrNotEnabled)
			} else {
				c.setReadyLocked(nil)
			}
			st.mu.Unlock()
			continue
		}
		if refused {
			return // no acks to request
		}
		act, wait, err := st.request(ctx, s, c, false)
		if err != nil {
			st.logAt(slog.LevelDebug, "sm: ack requester stops", "error", err)
			return
		}
		if act == actRequest {
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-c.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// unackedMessageLocked reports whether a message waits for an ack.
func (st *State) unackedMessageLocked() bool {
	q := &st.queue
	for i := range q.n {
		if q.buf[(q.head+i)%len(q.buf)].kind == kindMessage {
			return true
		}
	}
	return false
}

// deadlineLocked returns when the connection is dead if nothing moves
// until then, the bound that set that time, and since when the wait it
// bounds runs (from): the ack bound once an answer to a written <r/> (or
// to <enable/>) is awaited with no <a/> since, or the write bound
// (writeBoundLocked) once a request was booked and has not got out. dl is
// 0 if neither applies.
//
// A stanza read from the server is progress too (c.inAt): the server is
// working through what it wrote ahead of its answer, which a client slow
// to read (a backlog of thousands of stanzas) may take longer than the
// ack bound to reach. So the ack bound runs from the later of the wait's
// start and the last stanza read, but stanzas read excuse no more than
// the read cap (the write bound's length, stuckWriteFactor times
// AckTimeout) from the wait's start: a server that streams and never
// answers is still found. The cap limits only what they excuse: on the
// socket path it is one more look (see progressLocked), so a slow link
// whose socket shows progress is not cut by it.
//
// Where the State can see the TCP socket (c.sock), the ack bound is
// decided by looking at it instead (check: dl is when to look, see
// progressLocked): every half ack bound from half an ack bound after the
// request was booked or written.
func (c *conn) deadlineLocked() (dl, bound, from int64, check bool) {
	ack := c.st.ackBoundLocked()
	if ack <= 0 {
		return 0, 0, 0, false
	}
	wb := c.st.writeBoundLocked()
	since := c.sinceLocked()
	if since != 0 {
		dl, bound, from = since+ack, ack, since
		if c.inAt > since {
			dl = max(dl, c.inAt+ack)
			if rc := since + wb; wb > 0 && dl > rc {
				dl, bound = max(rc, since+ack), wb // the read cap
			}
		}
	}
	if start := min(since, c.bookAt); c.sock != nil && (since != 0 || c.bookAt != 0) {
		if start == 0 {
			start = max(since, c.bookAt)
		}
		d := start + ack/2
		if c.progOK {
			d = c.lookAt + ack/2
		}
		if rc := since + wb; since != 0 && wb > 0 && c.inAt > since && c.lookAt < rc && rc < d {
			d = rc // look at the read cap, when stanzas stop excusing the wait
		}
		dl, bound, from, check = d, ack, start, true
	}
	if wb > 0 && c.bookAt != 0 {
		if d := c.bookAt + wb; dl == 0 || d < dl {
			dl, bound, from, check = d, wb, c.bookAt, false
		}
	}
	return dl, bound, from, check
}

// sinceLocked is since when an answer to a written request is awaited
// with no <a/> received; 0: none.
func (c *conn) sinceLocked() int64 {
	if c.rWait == 0 && !c.smOn && !c.refused {
		return c.enableAt
	}
	return c.rWait
}

// progressLocked looks at the socket when an answer or a request's write
// has taken half an ack bound: at the bytes of ours the peer's TCP
// acknowledged, and those the kernel holds not yet acknowledged. It
// reports false, with c.fatal set, when the connection is dead:
//   - an answer is awaited, and the peer's TCP acknowledged the request's
//     bytes an ack bound ago or more: the State notes the acknowledged
//     bytes plus those the kernel holds, a point at or past the request's
//     end, right after each <r/> is written (noteRLocked; an answer still
//     awaited after an <a/> is for requests written at or before the last
//     one, so that point covers them too); once it is acknowledged the
//     server holds the request, and bytes written after it, however they
//     move, do not excuse the missing answer;
//   - bytes are pending and none was acknowledged for an ack bound (the
//     link is stuck, not slow: our request may be among them);
//   - none is pending and a written request has been unanswered for an ack
//     bound (the server's TCP took it all), unless bytes of ours were seen
//     pending during that wait: the server's TCP may have taken the
//     request only now, after a slow drain longer than the bound, and the
//     first rule then gives its answer a whole bound from the look that
//     found it taken (this rule cut a slow link at the first look after
//     its send queue drained, before the answer could come back).
//
// In each, a stanza read from the server within the ack bound is progress
// as in deadlineLocked (the server works through what it wrote ahead of
// its answer, or waits for us to read it before it reads on), until the
// answer has been awaited for the read cap; after it, only the socket's
// own progress counts. A request still held above the
// kernel (nothing pending) is left to the write bound; a socket that
// cannot tell, to the plain bounds.
func (c *conn) progressLocked(now int64) bool {
	acked, queued, ok := sendProgress(c.sock)
	if !ok {
		c.sock = nil
		return true
	}
	pending := queued > 0
	ack := c.st.ackBoundLocked()
	if !c.progOK || acked != c.progAcked {
		c.progOK, c.progAcked, c.progAt = true, acked, now
	}
	c.lookAt = now
	since := c.sinceLocked()
	if since != 0 {
		if c.markFor != since {
			c.markFor, c.mark, c.markAt = since, acked+queued, 0
		}
		if c.markAt == 0 && acked >= c.mark {
			c.markAt = now
		}
		if pending {
			c.pendFor = since
		}
	}
	var waited int64
	in := c.inAt
	if wb := c.st.writeBoundLocked(); since != 0 && wb > 0 && now-since >= wb {
		in = 0 // the read cap: stanzas read excuse the wait no longer
	}
	switch {
	case since != 0 && c.markAt != 0 && now-max(c.markAt, in) >= ack:
		waited = now - since
	case pending && now-max(c.progAt, in) >= ack:
		waited = now - c.progAt
	case !pending && since != 0 && c.pendFor != since && now-max(since, in) >= ack:
		waited = now - since
	default:
		return true
	}
	if c.fatal == nil {
		c.fatal = &AckTimeoutError{Bound: time.Duration(ack), Waited: time.Duration(waited)}
	}
	return false
}

// stuckLocked reports whether a request has waited to get out for longer
// than the ack bound: the server took none of our bytes for that long
// (or something held the output: a failed resumption is decided on it
// only for a connection that ended meanwhile, see Serve).
func (c *conn) stuckLocked() bool {
	ack := c.st.ackBoundLocked()
	return c.bookAt != 0 && ack > 0 && timeNow()-c.bookAt >= ack
}

// armLocked starts the watchdog when an answer is awaited or a request is
// being written, or brings it forward to an earlier deadline. The
// watchdog is a timer, not the requester: the requester may be blocked
// in a write to the very connection that froze.
func (c *conn) armLocked() {
	if c.watch == nil {
		return
	}
	dl, _, _, _ := c.deadlineLocked()
	if dl == 0 || c.watchArmed && dl >= c.watchAt {
		return
	}
	c.watchArmed, c.watchAt = true, dl
	c.watch.Reset(time.Duration(max(dl-timeNow(), 1)))
}

// watchdog runs when the awaited answer may be overdue: it re-arms if an
// <a/> moved the deadline, and ends the connection if not.
func (c *conn) watchdog() {
	st := c.st
	select {
	case <-c.done:
		return
	default:
	}
	st.mu.Lock()
	c.watchArmed = false
	if c.aliveLocked(timeNow()) {
		c.armLocked()
		st.mu.Unlock()
		return
	}
	// Under the same lock as the decision: an <a/> handled in between
	// would otherwise end a connection that just answered, with an
	// AckTimeoutError whose Waited is about 0.
	if st.overdueHook != nil {
		st.overdueHook()
	}
	st.deadLocked(c)
}

// aliveLocked is the watchdog's decision at now: false if the connection
// is dead (overdue, and the socket, if looked at, shows it).
func (c *conn) aliveLocked(now int64) bool {
	dl, _, _, check := c.deadlineLocked()
	return dl == 0 || now < dl || check && c.progressLocked(now)
}

// deadLocked ends a connection whose server stopped answering: it expires
// the connection's deadlines so that Serve returns (with ErrAckTimeout),
// and closes it. A resumed connection on which the server acknowledged
// nothing is a failed resumption: the next connection starts a new
// session. The caller holds st.mu, which deadLocked releases.
func (st *State) deadLocked(c *conn) {
	s := c.sess
	if c.fatal == nil {
		c.fatal = c.ackTimeoutLocked()
	}
	failedResume := c.resumed && !c.gotAck
	if failedResume {
		c.failedResume = true
		st.dropSessionLocked()
	}
	bound := time.Duration(st.ackBoundLocked())
	srtt := time.Duration(st.srtt)
	st.mu.Unlock()
	c.stop()
	st.logAt(slog.LevelWarn, "sm: the server stopped answering; dropping the connection",
		"bound", bound, "rtt", srtt, "resumed_without_ack", failedResume)
	if s != nil {
		conn := s.Conn()
		conn.SetDeadline(time.Unix(1, 0))
		// Close it too, off this goroutine: a TLS connection's Close sends
		// close_notify under a deadline of its own (5 s), which a full
		// send buffer would make it wait out; the application's Close after
		// Serve returned then returns at once.
		st.workers.Go(func() { conn.Close() })
	}
}

// Requester decisions.
const (
	actWait = iota
	actRequest
)

// request sends an <r/> if nextRequest calls for one now (or always with
// force); otherwise wait is how long until a rule may fire (0: wait for a
// signal).
func (st *State) request(ctx context.Context, s *xmpp.Session, c *conn, force bool) (act int, wait time.Duration, err error) {
	st.mu.Lock()
	now := timeNow()
	act, wait = c.nextRequest(now, st.cfg)
	if force && act == actWait && c.smOn {
		act = actRequest
	}
	if act == actRequest {
		// Book the request before writing it: its answer can be
		// processed before the write returns. A stanza written in
		// between is covered too but counted as not covered, which at
		// worst costs one extra <r/>. The ack bound starts only once it
		// is written (wrote): until then it may wait for mellium's output
		// behind a large write on a slow link, which the write bound
		// alone bounds (see "Dead connections").
		c.bookLocked(now)
	}
	st.mu.Unlock()
	if act != actRequest {
		return act, wait, nil
	}
	if h := st.bookedHook; h != nil {
		h()
	}
	_, err = wire.Write(ctx, s, stanza.AckRequest{}.TokenReader())
	st.mu.Lock()
	switch {
	case err == nil:
		c.wroteLocked()
	case errors.Is(err, xmpp.ErrOutputStreamClosed):
		// Refused, nothing written (the application closed the stream):
		// no answer is awaited for it, and the watchdog must not wait for
		// one.
		c.unbookLocked()
	}
	st.mu.Unlock()
	return act, 0, err
}

// wroteLocked records that the <r/> booked last got out: its answer is
// awaited from now on (unless it came already), within the ack bound.
func (c *conn) wroteLocked() {
	now := timeNow()
	c.bookAt, c.progOK = 0, false
	c.rOut++
	if c.aRecv < c.rOut {
		c.noteRLocked()
		if c.rWait == 0 {
			c.rWait = now
			c.markLocked(now)
		}
		if c.aRecv == c.rOut-1 && c.rAt == 0 {
			c.rAt = now // the only one unanswered: a round-trip sample
		}
		if c.tOrd == 0 {
			c.tOrd, c.tAt, c.tN = c.rOut, now, c.st.queue.len()
		}
	} else if !c.coveredLocked() && c.rWait == 0 {
		// An <a/> read while it waited to get out was taken as its
		// answer but did not cover what was written before it: the
		// answer that does is awaited from now.
		c.rWait = now
		c.markLocked(now)
	}
	c.armLocked()
	if h := c.st.wroteHook; h != nil {
		h()
	}
}

// bookLocked books a request about to be written: it covers every
// stanza written so far, and TCP_NODELAY is set again so that it does not
// wait behind what Nagle's algorithm holds (see coalesceLocked).
func (c *conn) bookLocked(now int64) {
	c.bookAt, c.progOK = now, false
	c.armLocked()
	c.lastAct = now
	c.rSent++
	c.needLocked(c.st.outH)
	c.sinceReq, c.uncovered, c.lone = 0, 0, false
	c.flushLocked()
}

// needLocked raises c.need, the count of stanzas written before our last
// <r/> that a correct answer covers (see coveredLocked), to h. It is
// called twice per <r/>: when the request is booked, with the stanzas
// counted then, all written before it (a stanza being written holds
// mellium's output, which the <r/> waits for), so that an answer read
// before the write returns finds it; and when the outbound scanner sees
// the <r/>, with the exact count, which may come after the answer was
// read (mellium copies the bytes to the tee after the connection took
// them). A correct answer covers both, so raising need after it was read
// never makes it stale. A booking whose write is refused (the stream was
// closed) leaves need raised: nothing more is awaited on that stream.
func (c *conn) needLocked(h uint32) {
	if !c.needOK || int32(h-c.need) > 0 {
		c.need, c.needOK = h, true
	}
}

// noteRLocked reads, right after an <r/> was written, the point of our
// byte stream at or past its end (the bytes acknowledged plus those the
// kernel holds): every request still unanswered was written at or before
// it, so it marks them all.
func (c *conn) noteRLocked() {
	c.rMarkOK = false
	if c.sock == nil {
		return
	}
	if acked, queued, ok := sendProgress(c.sock); ok {
		c.rMark, c.rMarkOK = acked+queued, true
	}
}

// markLocked starts the wait for an answer awaited since now (see
// progressLocked) at the point noted after the last <r/> (noteRLocked):
// the request's end plus only what was written before that reading.
// Without one it leaves the mark to the first look.
func (c *conn) markLocked(now int64) {
	c.markFor, c.markAt = 0, 0
	if c.rMarkOK {
		c.markFor, c.mark = now, c.rMark
	}
}

// unbookLocked takes back the booking of an <r/> that was never written.
// An <a/> counted in between (an unsolicited one: a server may send one
// at any time) was counted against it, so aRecv is capped to keep it at
// most rSent. With no written <r/> left unanswered, no answer is awaited
// and the round-trip start is dropped, lest a later <a/> feed a false
// round trip into the smoothed RTT.
func (c *conn) unbookLocked() {
	c.rSent--
	c.bookAt, c.progOK = 0, false
	if c.aRecv > c.rSent {
		c.aRecv = c.rSent
	}
	if c.aRecv >= c.rOut {
		c.rWait, c.rAt, c.tOrd = 0, 0, 0
	}
}

// nextRequest decides whether to send an <r/> now and, if not, how long
// until a rule may fire (0: wait for a signal). The rules:
//
//   - nothing is requested before the server enabled stream management;
//     once it did, the stanzas written since <enable/> are covered by the
//     time rule, counted from when they were written (so at once if the
//     answer took longer than AckDelay);
//   - idle rule: a stanza written while nothing was unacknowledged and no
//     <r/> unanswered (the link was idle) is requested at once, so a lone
//     message is acknowledged in one round trip; the stanzas that follow
//     it before its answer are batched by the other rules;
//   - count rule: once AckEvery stanzas were written since the last <r/>,
//     request, unless an earlier <r/> is still unanswered (its <a/> will
//     wake the requester);
//   - time rule: once the oldest stanza not covered by an <r/> has waited
//     AckDelay, request even if an <r/> is unanswered, so that every
//     stanza is covered within AckDelay;
//   - probe rule: once no <r/> was sent and no <a/> received for
//     IdleProbe, and none is unanswered, request (a probe).
//
// Whether the connection is dead is the watchdog's business (armLocked).
func (c *conn) nextRequest(now int64, cfg Config) (int, time.Duration) {
	var due int64 // earliest time a rule fires, 0 if none
	at := func(t int64) {
		if due == 0 || t < due {
			due = t
		}
	}
	if !c.smOn {
		return actWait, wait(due, now)
	}
	if c.sinceReq > 0 {
		if c.lone || c.sinceReq >= cfg.AckEvery && c.aRecv == c.rSent {
			return actRequest, 0
		}
		d := c.uncovered + int64(cfg.AckDelay)
		if now >= d {
			return actRequest, 0
		}
		at(d)
	}
	if cfg.IdleProbe > 0 && c.aRecv == c.rSent && c.lastAct != 0 {
		d := c.lastAct + int64(cfg.IdleProbe)
		if now >= d {
			return actRequest, 0
		}
		at(d)
	}
	return actWait, wait(due, now)
}

// wait converts a due time into a timer duration (0: none).
func wait(due, now int64) time.Duration {
	if due == 0 {
		return 0
	}
	return time.Duration(max(due-now, 1))
}

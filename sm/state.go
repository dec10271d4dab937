package sm

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/internal/smhook"
)

// State is the stream management state of one account. It outlives
// connections: create one with New, then for every connection call Tees,
// BindOrResume, Start and Handler as described in the package
// documentation. Its methods are safe for concurrent use.
type State struct {
	cfg Config
	log *slog.Logger

	// spare is the event slice not in use, owned by the goroutine that is
	// delivering (see deliver).
	spare []event

	workers sync.WaitGroup // the ack requesters Start started

	// ackMu orders the acks we write: it is held from the choice of an h
	// until the writer holds mellium's output lock (see SendAck).
	ackMu sync.Mutex

	mu   sync.Mutex
	conn *conn // connection of the last Tees call

	// overdueHook, set by tests, runs when the watchdog found an answer
	// overdue, before the connection is ended, with mu held.
	overdueHook func()
	// bookedHook, set by tests, runs when an <r/> was booked, before its
	// write, with no lock held.
	bookedHook func()
	// wroteHook, set by tests, runs when a booked <r/> was written and
	// its booking cleared, with mu held.
	wroteHook func()
	// settleHook, set by tests, runs when an <a/> whose h exceeds the
	// outbound count waits for the writes under way (settleWrites), before
	// it takes mellium's output lock, with no lock held.
	settleHook func()
	base       uint32 // counters restart here; tests set values near 2^32
	noCoalesce bool   // coalescing is off (see coalesceAt): internal/smhook.NoCoalesce at New, or set by tests

	// The stream management session, which resumption carries over.
	id        string // SM-ID; a credential, never logged above debug level
	resumable bool
	max       uint32
	location  string
	jid       jid.JID // full JID bound for the session, restored on resume

	ord uint64 // stanzas first written, for entry.ord

	srtt    int64    // smoothed <r/> round trip in ns, 0 before the first sample
	careful bool     // the next connection re-sends one message at a time (policy violation)
	refusal *refusal // a policy violation to pin when the next connection settles

	inH   uint32 // inbound stanzas handled
	read  uint32 // inbound stanzas counted on the current connection (Resumption)
	toldH uint32 // the last h we sent the server in <a/> (Resumption)
	outH  uint32 // outbound stanzas written (number of the last one)
	// loose says that outH came from Restore: stanzas a store does not
	// keep, written after the count it saved, are not in it, so the first
	// answer to a resumption may exceed it (see looseLocked).
	loose  bool
	ackedH uint32 // last h acknowledged by the server

	queue      queue   // written, not acknowledged: seq ackedH+1 .. outH
	retransmit []entry // to retransmit after <resumed/>, not yet re-sent
	held       []entry // ambiguous, held back for Config.OnAmbiguous; not counted on the stream
	orphans    []entry // of a stream that cannot be resumed; for the Policy

	events     []event      // callbacks to run, in order
	delivering bool         // a goroutine is running callbacks (deliver)
	pace       turnstile    // Pace's slots and waiters
	win        adaptive     // the default window (Config.Window 0)
	reserve    turnstile    // Reserve's slots and waiters
	answers    turnstile    // ReserveAnswers' slots and waiters
	places     []*slotPlace // places of released Slots, for reuse
}

type evKind uint8

const (
	evAcked evKind = iota
	evLost
	evResend
	evRefused
)

type event struct {
	kind evKind
	e    entry
	err  error // evRefused: the stream error
}

// New returns a State for one account.
func New(cfg Config) *State {
	cfg = cfg.withDefaults()
	return &State{cfg: cfg, log: cfg.Logger, noCoalesce: smhook.NoCoalesce.Load()}
}

// Info describes the stream management state at one point in time.
type Info struct {
	// Enabled reports whether stream management is on for the current
	// connection (the server answered <enabled/> or <resumed/>, and
	// State.Serve has not returned).
	Enabled bool
	// Resumed reports whether the current connection resumed the previous
	// stream instead of binding a new session.
	Resumed bool
	// Resumable reports whether the stream can be resumed after the
	// connection is lost.
	Resumable bool
	// Max is how long the server keeps the stream resumable after the
	// connection is lost (the max attribute of <enabled/>); 0 means the
	// server did not say.
	Max time.Duration
	// Location is the server's preferred address for reconnecting
	// ("host:port"), "" if none. Only connect there after the server
	// proved its identity, and fall back to normal resolution.
	Location string
	// Unacked counts the stanzas that wait for an ack or for re-sending.
	Unacked int
	// Reserved counts the places in the queue that Reserve and
	// ReserveAnswers handed out and that were not released: Reserve admits
	// a caller while Unacked plus Reserved is below Config.MaxUnacked;
	// ReserveAnswers does not count the places Reserve handed out, so
	// Unacked plus Reserved may exceed MaxUnacked by at most those.
	Reserved int
	// Sent, Acked and Handled are the outbound counter, the last h the
	// server acknowledged, and the inbound counter, all modulo 2^32.
	Sent, Acked, Handled uint32
	// RTT is the smoothed time from an <r/> to its <a/> (the network round
	// trip plus the server's time to process what was written before the
	// <r/>); 0 before the first answer.
	RTT time.Duration
	// AckBound is how long an <r/> may stay unanswered, with no stanza
	// read from the server either, before the connection is taken for dead
	// (Config.AckTimeout, scaled by RTT); 0 if disabled.
	AckBound time.Duration
	// Window is the number of stanzas in flight Pace lets through now:
	// Config.Window, or the default window's current size (from
	// MinWindow to DefaultWindow); -1 if disabled.
	Window int
}

// Info returns the current state.
func (st *State) Info() Info {
	st.mu.Lock()
	defer st.mu.Unlock()
	i := Info{
		Resumable: st.resumable && st.id != "",
		Max:       time.Duration(st.max) * time.Second,
		Location:  st.location,
		Unacked:   st.pendingLocked(),
		Reserved:  st.reserve.admitted + st.answers.admitted,
		Sent:      st.outH,
		Acked:     st.ackedH,
		Handled:   st.inH,
		RTT:       time.Duration(st.srtt),
		AckBound:  time.Duration(st.ackBoundLocked()),
		Window:    st.windowLocked(),
	}
	if c := st.conn; c != nil {
		i.Enabled = c.smOn && !c.ended
		i.Resumed = c.resumed
	}
	return i
}

// Enabled reports whether stream management is on for the current
// connection.
func (st *State) Enabled() bool { return st.Info().Enabled }

// Resumed reports whether the current connection resumed the previous
// stream.
func (st *State) Resumed() bool { return st.Info().Resumed }

// Wait waits until the goroutines that Start started have returned. They
// return when their connection ends (Serve returned and the connection is
// closed) or when the ctx given to Start ends; call Wait after that, for
// example before a program checks that it leaked no goroutines.
func (st *State) Wait() { st.workers.Wait() }

// WaitEnabled waits until stream management is up on the current
// connection (that of the last Tees call): the server answered <enable/>
// with <enabled/>, or the connection resumed the stream, and the messages
// of a lost stream that Start held for that answer were re-sent (see
// Start). Serve must run meanwhile: it processes the answer. Sending after
// WaitEnabled returned nil keeps the original order of the re-sent
// messages and new ones, and Info().Enabled is true (until the connection
// ends).
//
// It returns promptly with ErrNotEnabled when the connection works
// without stream management (the server does not offer it, or refused it;
// the held messages were then re-sent without it), with ErrConnEnded
// when the connection ended or Start failed first, with ctx.Err() when
// ctx ends first, and with ErrNoTees before the first Tees call. It may be
// called before Start, from any goroutine, but not from a handler: it
// would wait for the answer that the handler's goroutine is to process.
func (st *State) WaitEnabled(ctx context.Context) error {
	st.mu.Lock()
	c := st.conn
	st.mu.Unlock()
	if c == nil {
		return ErrNoTees
	}
	select {
	case <-c.ready:
	case <-c.done:
	case <-ctx.Done():
	}
	st.mu.Lock()
	ready, err := c.isReady, c.readyErr
	st.mu.Unlock()
	if ready {
		return err
	}
	select {
	case <-c.done:
		return ErrConnEnded
	default:
		return ctx.Err()
	}
}

// Abandon gives up on every stanza that waits for an ack or a re-send:
// each is reported to OnLost, and the stream becomes non-resumable. Call it
// when the account is shut down for good, after its last session ended.
// Callbacks run on the calling goroutine.
func (st *State) Abandon() {
	st.mu.Lock()
	all := st.queue.drain(nil)
	all = append(all, st.retransmit...)
	all = append(all, st.orphans...)
	all = append(all, st.held...)
	st.retransmit, st.orphans, st.held = nil, nil, nil
	st.ackedH = st.outH
	st.dropSessionLocked()
	for _, e := range all {
		st.pushLocked(evLost, e)
	}
	st.spaceLocked()
	st.mu.Unlock()
	st.deliver()
}

// pendingLocked counts the stanzas not yet acknowledged.
func (st *State) pendingLocked() int {
	return st.queue.len() + len(st.retransmit) + len(st.orphans) + len(st.held)
}

// spaceLocked hands the room there is to the callers waiting in Pace and
// Reserve; called whenever stanzas leave the queue or a Slot comes back.
func (st *State) spaceLocked() {
	st.paceLocked()
	st.reserveLocked()
}

// dropSessionLocked forgets the stream management session: it can no
// longer be resumed.
func (st *State) dropSessionLocked() {
	st.id = ""
	st.resumable = false
}

// ackLocked processes h from <a/>, <resumed/> or <failed/>. It releases the
// stanzas it covers (comparing modulo 2^32) and queues OnAcked events; a
// stanza whose number Restore guessed (entry.unsure) is moved to the end
// of st.retransmit instead, to be sent again.
// An h that does not advance (repeated, older, unsolicited) is a no-op. An h
// beyond what was sent releases nothing and reports tooHigh.
func (st *State) ackLocked(h uint32) (n int, tooHigh bool) {
	d := int32(h - st.ackedH)
	if d <= 0 {
		return 0, false
	}
	if exceeds(h, st.ackedH, st.outH) {
		return 0, true
	}
	for n = 0; n < int(d) && st.queue.len() > 0; n++ {
		e := st.queue.pop()
		if e.unsure {
			// Its number is a guess (State.Restore): kept to be sent again.
			st.retransmit = append(st.retransmit, e)
			continue
		}
		st.pushLocked(evAcked, e)
	}
	st.ackedH = h
	st.spaceLocked()
	return n, false
}

// pushLocked queues a callback, if there is one for k.
func (st *State) pushLocked(k evKind, e entry) {
	if e.raw == nil {
		return // a gap left by Restore: no stanza to report
	}
	switch k {
	case evAcked:
		if st.cfg.OnAcked == nil {
			return
		}
	case evLost:
		if st.cfg.OnLost == nil {
			return
		}
	case evResend:
		if st.cfg.OnResend == nil {
			return
		}
	case evRefused:
		if st.cfg.OnRefused == nil {
			k = evLost // never vanish: without OnRefused it is lost
			if st.cfg.OnLost == nil {
				return
			}
		}
	}
	st.events = append(st.events, event{kind: k, e: e})
}

// refuseLocked queues the OnRefused call for e.
func (st *State) refuseLocked(e entry, err error) {
	st.pushLocked(evRefused, e)
	if n := len(st.events); n > 0 && st.events[n-1].kind == evRefused {
		st.events[n-1].err = err
	}
}

// sampleRTTLocked folds one <r/> round trip into the smoothed value
// (weight 1/8, as TCP does).
func (st *State) sampleRTTLocked(d int64) {
	if d < 0 {
		return
	}
	if st.srtt == 0 {
		st.srtt = d
		return
	}
	st.srtt += (d - st.srtt) / 8
}

// ackBoundLocked is how long a request may stay unanswered: AckTimeout
// plus four smoothed round trips, at most twice AckTimeout. 0: no bound.
func (st *State) ackBoundLocked() int64 {
	if st.cfg.AckTimeout < 0 {
		return 0
	}
	return int64(st.cfg.AckTimeout) + min(4*st.srtt, int64(st.cfg.AckTimeout))
}

// stuckWriteFactor times Config.AckTimeout is the write bound: how long
// a request (<r/> or <enable/>) may take to get out (2 minutes at the
// default). See "Dead connections".
const stuckWriteFactor = 24

// writeBoundLocked is the write bound; 0: none (AckTimeout negative).
func (st *State) writeBoundLocked() int64 {
	if st.cfg.AckTimeout < 0 {
		return 0
	}
	return stuckWriteFactor * int64(st.cfg.AckTimeout)
}

// deliver runs the queued callbacks, in order, one at a time, with no
// lock held, so that a callback may call any method of the State (OnLost
// may call Abandon). Only one goroutine delivers at a time: a call made
// while another goroutine (or, from a callback, the same one) is
// delivering only queues its events, and the delivering goroutine runs
// them once the callback in progress returned.
func (st *State) deliver() {
	st.mu.Lock()
	if st.delivering {
		st.mu.Unlock()
		return
	}
	st.delivering = true
	for {
		evs := st.events
		if len(evs) == 0 {
			st.delivering = false
			st.mu.Unlock()
			return
		}
		st.events = st.spare[:0]
		st.spare = nil
		st.mu.Unlock()
		st.run(evs)
		clear(evs)
		st.mu.Lock()
		st.spare = evs[:0]
	}
}

// run calls the callbacks of evs. A callback's panic propagates to the
// goroutine that delivered; later calls of deliver run later events.
func (st *State) run(evs []event) {
	defer func() {
		if r := recover(); r != nil {
			st.mu.Lock()
			st.delivering = false
			st.mu.Unlock()
			panic(r)
		}
	}()
	for i := range evs {
		s := evs[i].e.stanza()
		switch evs[i].kind {
		case evAcked:
			st.cfg.OnAcked(s)
		case evLost:
			st.cfg.OnLost(s)
		case evResend:
			st.cfg.OnResend(s)
		case evRefused:
			st.cfg.OnRefused(s, evs[i].err)
		}
	}
}

// logAt logs if a logger is configured and the level is enabled.
func (st *State) logAt(level slog.Level, msg string, args ...any) {
	if st.log == nil || !st.log.Enabled(context.Background(), level) {
		return
	}
	st.log.Log(context.Background(), level, msg, args...)
}

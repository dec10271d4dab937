// Package sm implements XEP-0198 Stream Management for mellium.im/xmpp
// sessions: it counts the stanzas of both directions, answers the server's
// ack requests and sends its own, keeps every unacknowledged stanza,
// resumes the stream on a new connection and retransmits what the server
// did not acknowledge. It is usable on its own by any mellium client.
//
// mellium v0.23.0 has no stream management, and it reads and writes
// stanzas that an application never sees: IQ results delivered to SendIQ
// waiters, automatic service-unavailable errors, replies of packages such
// as receipts. A count taken at API level is wrong (XEP-0198 counts every
// stanza), so this package counts bytes: StreamConfig.TeeIn and TeeOut
// copy the plaintext stream (mellium installs them above TLS, across
// stream restarts) into a small XML scanner that finds every top-level
// element. The outbound scanner keeps the bytes of each stanza, so any
// stanza can be retransmitted, whoever wrote it.
//
// # Connecting
//
// A State belongs to one account and outlives its connections. For each
// connection, in this order:
//
//	st := sm.New(sm.Config{OnAcked: acked, OnLost: lost})  // once per account
//
//	// 1. Fresh tees for this connection.
//	in, out := st.Tees()
//	// 2. Negotiate, with BindOrResume in place of the bind feature.
//	s, err := xmpp.NewSession(ctx, addr.Domain(), addr, conn, 0,
//		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
//			return xmpp.StreamConfig{
//				Features: []xmpp.StreamFeature{
//					xmpp.StartTLS(tlsConfig),
//					xmpp.SASL("", password, sasl.ScramSha256Plus, sasl.ScramSha256),
//					st.BindOrResume(xmpp.BindResource()),
//				},
//				TeeIn:  in,
//				TeeOut: out,
//			}
//		}))
//	// 3. Enable stream management, or retransmit after resumption.
//	connCtx, cancel := context.WithCancel(ctx)
//	err = st.Start(connCtx, s)
//	// 4. Serve runs until the connection ends; it processes the answer
//	//    to <enable/>.
//	go func() {
//		st.Serve(s, appHandler)
//		cancel()
//		conn.Close()
//	}()
//	// 5. Optionally wait for that answer (and the re-sends it releases).
//	err = st.WaitEnabled(ctx)
//	// 6. Only now may the application send on s (st.Reserve and st.Pace
//	//    before each send, releasing their Slots after it). When Serve
//	//    has returned, reconnect (with backoff) and start again at 1.
//
// If NewSession or Start fails, close the connection and reconnect: nothing
// is lost, the state keeps every unacknowledged stanza. Start must run
// before Serve and before the application sends anything: it writes
// <enable/>, or the retransmissions, first. The application may send as
// soon as Start returned; WaitEnabled tells when stream management is on
// (Info().Enabled) and the messages of a lost stream were re-sent, so that
// what is sent next follows them. st.Serve(s, h) is
// s.Serve(st.Handler(h)) plus clean-up; use Handler directly if Serve is
// called elsewhere, and cancel Start's context when Serve returns.
//
// # Counting
//
// Only <message/>, <presence/> and <iq/> count. The outbound count starts
// at 0 when <enable/> is written and the inbound count when the
// </enabled> answering it is read (XEP-0198 §4); after <resumed/> both
// continue. Only the answer to our request moves them (see "Streams that
// cannot be resumed" for one that answers nothing). Counters are
// uint32 and wrap from 2^32-1 to 0; every comparison is modulo 2^32.
//
// # Acknowledgements
//
// The server's <r/> is answered at once, from the Serve goroutine, with the
// number of stanzas received before that <r/> (not after the decoder's
// read-ahead), or less when Config.Handled bounds it (a durable client
// acknowledges only what its store saved as handled; an unsolicited <a/>,
// SendAck, tells the server once that count moves). Acks reach the server
// in the order of their values, never below one sent before.
//
// SendAck is the one exported way to send an ack of one's own: it takes
// a context first, like every method here that writes, and never hands
// that context to mellium (see SendAck). There is no variant without a
// context: a caller that must not cut the stream short passes one that
// never ends and bounds the write with the connection's deadline, as this
// module's client does.
//
// The server's <a h/> releases the stanzas it covers and calls OnAcked for
// each, in order: the tracking layer turns that into DELIVERED_TO_SERVER.
// An h that does not advance (repeated, older, unsolicited) is a no-op
// (and no answer while stanzas written before our last <r/> wait: see
// "Dead connections"), except in <resumed/>: a server cannot unhandle what
// it acknowledged, so a <resumed h> below an earlier h is a protocol error
// (bind anew; the Policy takes the unacknowledged stanzas). An h above
// what was sent ends the stream with the handled-count-too-high stream
// error (XEP-0198 §6), once the writes under way are counted: mellium
// hands a stanza to the connection before it copies it to the tee, so an
// unsolicited <a/> may count a stanza the tee has not seen yet, and the
// handler waits for mellium's output (the lock our <r/> takes before its
// write) before it judges such an h again, whether the <a/> answers a
// request of ours or not (Prosody counts a stanza when it parses it and
// may answer an <r/> later, with a count that includes stanzas written
// after that <r/>); an h that is missing or not an
// unsignedInt ends it with bad-format (every form of the type's lexical
// space is one, "+7" and " 7 " too: see stanza.ParseH). Such a stream is
// never resumed; its unacknowledged stanzas go to the Policy on the next
// connection. The one exception is the first answer (<resumed h> or
// <failed h>) to the resumption of a stream restored from a store
// (State.Restore): the saved count misses the stanzas the store does not
// keep written after it was saved, so an h up to 65,536 above it counts
// those, and every stanza restored without a recorded number is then taken
// as possibly received (see Config.OnAmbiguous).
//
// # Requesting acknowledgements
//
// One goroutine per connection sends <r/> (with Session.Send; never from
// the tee path or a handler), with one timer, under these rules:
//
//   - idle link: a stanza written while nothing was unacknowledged and no
//     <r/> unanswered is requested at once, so a lone message is
//     acknowledged in one round trip;
//   - count: once AckEvery (default 8) stanzas were written since the last
//     <r/>, request, unless an earlier <r/> is unanswered;
//   - time: once the oldest stanza not covered by an <r/> has waited
//     AckDelay (default 10 ms), request, even if one <r/> is unanswered;
//   - probe: see "Dead connections".
//
// So while an <r/> is unanswered, a busy sender sends no other until the
// time rule needs one, and at most one per 8 stanzas otherwise: 5,000
// messages written one per 50 µs (synthetic time) get one per 8 stanzas
// when the server answers in 100 µs, one per 20 (one per round trip) when
// it answers in 1 ms. The idle rule adds one each time the answers catch
// up with the writer (the next stanza finds the link idle): against a
// scripted server that answers at once, 5,000 messages written as fast as
// possible were observed with one <r/> per 7.7 to one per 200 stanzas,
// depending on scheduling. Stanzas written behind unacknowledged ones are
// batched, and a stanza is acknowledged within AckDelay plus one round
// trip at worst. A second request is only in flight when the time rule
// needs it for stanzas written after the first one. A sender slower than
// one message per round trip gets one <r/> per message: each finds the
// link idle.
//
// # Pacing
//
// Pace, called before each application stanza (after Reserve), waits
// while the window's places are taken on the connection: by stanzas
// written and not yet acknowledged, and by the Slots it handed out and
// that were not released yet. A sender that writes thousands of stanzas
// ahead of the server's acks fills the server's input: the server's
// answers to our <r/> and its own <r/> wait behind that backlog, and the
// stanzas it keeps for us until our <a/> pile up. Measured against Prosody
// 0.12 on loopback, 5,000 messages with their receipts and markers cost
// the server 2.3 s of CPU unpaced and 0.9–1.1 s paced (0.8–1.0 s for
// plain mellium without stream management).
//
// The default window (Config.Window 0) follows the server's queue, from
// the round trips of the <r/> it already sends (one timed at a time): it
// is DefaultWindow (256) while the server answers within about 10 ms of
// the route's own round trip, and shrinks toward MinWindow (32) once three
// answers in a row took 30 ms longer than that, so that it holds about
// 20 ms of the server's work; it grows back by half per answer that came
// within 10 ms; it never goes below MinWindow, so nothing in it holds
// Pace longer than a fixed window of the same size would. The route's
// round trip is the least one measured with nothing queued ahead: the
// <enable/> exchange, or an <r/> written with at most two stanzas in
// flight (a lone message's, say); a lower round trip, whatever was in
// flight, lowers it. It is a windowed minimum over the clean samples of
// the last 10 to 20 s, so a route that got longer is learned from the
// first clean samples that come by themselves once the load pauses (until
// then it is taken for a queue, and the window stays at or above
// MinWindow); under load without a pause the last measure stands. Each
// connection starts at 256 with no measure, and without one (a resumed
// connection: until its first clean sample) the window does not shrink,
// so a long route is never taken for a queue at the start. Answers to lone
// stanzas, however late, do not move the window, and a lone message is
// still requested at once. Info.Window reports the current size.
//
// This is for a Prosody 0.12 that archives every message: 256 stanzas of
// about 300 bytes are ten times the 8 KiB that Prosody reads at once, and
// while more than one read waits in its input it pauses its reads for as
// long as it spent processing the last one, so it runs at most half the
// time, as for a sender without a window; once paused, it lets the
// backlog grow to the whole window and stays paused. With 32 it does not
// pause (20,000 messages to an offline account took 0.20–0.70 of plain
// mellium's time in nine loaded rounds with a fixed window of 32,
// 0.35–2.37 with 256), while where the server is quick a fixed window of
// 32 costs the sender about a quarter more CPU per message (the stream is
// choppier, and Prosody and we each request acks five to seven times as
// often), which the default window does not pay there. A positive
// Config.Window is a fixed window, as before; a negative one disables it.
// The window allows its size in stanzas per round trip: on a link whose
// route takes 100 ms, 256 allow 2,560 messages a second. The cost of the
// default is a server that is slow per stanza behind a long route: 32
// stanzas arriving together wait longer than the 30 ms the rule allows,
// so the window stays at 32 (in virtual time, 1 ms per stanza behind a
// 100 ms route: 319 messages a second against 962 with a fixed 256); set
// Window to 256 for such a link.
//
// During a burst the stanzas are coalesced on Linux (with or without a
// window): once one is written with MinWindow or more unacknowledged and
// room left in the window, Nagle's algorithm is turned on for the TCP
// socket under the session (Go turns it off), so that a write while
// bytes are in flight only queues and the queue goes out with the
// server's next TCP acknowledgement, instead of every stanza paying for
// its own segment and the server's wake-up. Each
// <r/> is written with TCP_NODELAY set again first (which sends what was
// held), and so is it set when a sender has to wait for room (Pace,
// Reserve, ReserveAnswers), so a request never waits for the server's
// delayed acknowledgement and a stanza held is sent at the latest with
// the request that covers it, within AckDelay. A lone message goes out
// at once as before; anything written while Nagle is on (the end of a
// burst, a receipt or marker, our own <a/> answering the server's <r/>)
// may reach the server up to AckDelay later, or at the server's delayed
// TCP acknowledgement if that comes first.
//
// Pace returns a Slot, released after the write. The window counts the
// stanzas written and not acknowledged plus the slots out, so it holds for
// any number of concurrent senders on a connection (an HTTP gateway's, for
// one): an ack that makes room for k stanzas lets k waiting callers
// through, in the order they came, not all of them. A slot whose caller
// does not write (its ctx ended, the write failed, it changed its mind)
// goes back to the window when released; a caller whose ctx ends while it
// waits takes none. A caller whose connection ends while it waits gets
// ErrConnEnded, and paces again on the next connection.
//
// Reserve hands out places in the queue of stanzas kept for re-sending
// (Config.MaxUnacked) the same way, across connections: its Slot is
// released after the write too, an ack lets through as many waiting
// callers as it made room for, in the order they came, and MaxUnacked
// holds for any number of concurrent senders. ReserveAnswers is Reserve
// for answers to the peer (receipts, markers): it takes several places in
// one Slot, and does not wait for the places Reserve's callers hold (so
// the queue may exceed MaxUnacked by those), while Reserve's waiters are
// served first when room comes back. A Slot is released once: it must
// not be copied (go vet reports copies), and a copy released after the
// original is caught and ignored.
//
// # Dead connections
//
// A connection can freeze without ending: a NAT or firewall drops its
// state, a proxy stalls, a server stops reading. No FIN or RST arrives,
// writes fill the socket buffer and block, and nothing would ever be
// acknowledged again. The State notices: once an <r/> (or the <enable/>
// it wrote) has been written and stayed unanswered for Config.AckTimeout
// (default 5 s) plus four times the smoothed round trip of earlier <r/>
// (at most AckTimeout again; Info.RTT and Info.AckBound report both),
// with no <a/> that made progress (below) received meanwhile, the
// connection is dead. A slow server that answers late but answers (under
// a burst, each <a/> restarts the bound) is not.
//
// An <a/> restarts the bound only if it makes progress: it acknowledges
// stanzas not acknowledged before, or covers every stanza written before
// our last <r/>. A server answers an <r/> with the count of stanzas it
// handled before it, so a correct answer covers every stanza written
// before that <r/>, never one written after it (the server had not read
// it yet). The State takes that count when it books the <r/> (stanzas
// counted then were all written before it: a write holds mellium's output,
// which the <r/> waits for) and again when the outbound tee sees the <r/>
// (exact, but possibly after the answer was read). An answer that
// acknowledges nothing new while such stanzas wait is stale: a server that
// lost them, or whose parser swallowed them, and answers every <r/> with
// the same h, or an unsolicited <a/> repeating an old h. The wait goes on
// from where it was, so a server whose answers stop short is found within
// the ack bound of its last progress, as one that does not answer is, and
// the connection ends with ErrAckTimeout. The next connection resumes, and
// <resumed h> settles what the server has (the rest is retransmitted). A
// stale answer is no ack either for a resumed connection, which, if it
// gets nothing else, is a failed resumption (see below): the Policy takes
// the stanzas on a new session. An answer that acknowledges some of them
// is progress, and the bound starts again for the rest.
//
// Nor is a client slow to read: a server writes its answer behind
// everything it wrote before (a backlog of thousands of stanzas after a
// reconnection, a busy room), which a loaded client may take longer than
// the bound to read, and after a resumption the server writes that
// backlog again ahead of its answer. So every stanza read from the server
// is progress too: the bound runs from the later of the request's write
// (or the last <a/>) and the last stanza read. Stanzas read excuse no
// more than a cap: once an answer has been awaited, with no <a/>, for 24
// times AckTimeout (2 minutes at the default, the write bound below),
// stanzas no longer put the end off, so a server that streams and never
// answers is still found (without a socket to look at, the
// AckTimeoutError's Bound is then the cap); so is a backlog that takes
// longer than the cap to read (on a resumed connection with nothing
// acknowledged yet, that is a failed resumption, see below). The cap
// limits only what stanzas excuse: a slow link whose socket shows
// progress (below) goes on past it. Only stanzas count: whitespace
// keepalives and a server's own <r/> say nothing of its progress toward
// our answer. The known cost: a server that stopped answering but still
// routes stanzas to us, one at least every ack bound (presence, a room's
// traffic), is found only at the cap, even when the client has read
// everything. The client cannot tell it from a link slower than the
// server that brings a backlog ahead of the answer as fast as the client
// reads it (bytes still in the server's queue or on the wire show in no
// socket of ours), and cutting that one would make a resumed connection
// a failed resumption.
//
// What counts is reading, not handling: a reader that the application
// stops reads nothing (a handler that blocks on Serve's goroutine; the
// xmpptrack client's reader waits while 256 stanzas wait for its
// callbacks, so a callback that blocks stops it), and a connection whose
// answer waits behind what it does not read is taken for dead after the
// ack bound, as a frozen one is, and resumed; if the stall outlasts the
// resumed connection's bound too, with nothing acknowledged on it, that
// is a failed resumption, and the server's queue for the old session is
// its business. Callbacks must not block (see the xmpptrack client's
// Config.OnMessage).
//
// A timer watches this, not the ack requester, which
// may itself be blocked writing to the frozen connection. The State then
// expires the connection's deadlines (net.Conn.SetDeadline in the past),
// so reads and writes in progress fail at once and Serve returns an
// *AckTimeoutError (matching ErrAckTimeout), and closes the connection (on
// a goroutine that Wait waits for: a TLS close may wait up to 5 s for room
// to send close_notify). Reconnect as after any loss; the stream is
// resumed as usual.
//
// The ack bound of an <r/> starts when its write returned (its bytes were
// handed to the connection), not when the requester decided to send it:
// the <r/> may wait for mellium's output behind a large stanza (the idle
// probe is due, or the previous stanza's write returned and the next one
// holds the output), or behind every writer queued for the output before
// it, and a slow but working link takes as long as it takes to carry
// them. Once written, it may still wait in the socket's send buffer
// behind the bytes before it. mellium writes a large text in one write,
// and copies it to the tees only once all of it left, so the State cannot
// tell from the writes alone a link that is slow from one that is stuck.
// Three things tell:
//
//   - the TCP socket, on Linux, where the State finds it under the
//     session's connection (through *tls.Conn and wrappers that embed the
//     net.Conn, as mellium's tees and the xmpptrack client's own do):
//     from half an ack bound after a request was booked or written
//     without an answer, the State looks at the socket's TCP_INFO every
//     half ack bound. When it writes an <r/> (or, for an answer still
//     awaited after an <a/>, at its first look) it notes the bytes
//     acknowledged plus those the kernel holds: a point at or past the
//     request's end. Once the peer's TCP acknowledged that point,
//     the server holds the request, and an answer missing an ack bound
//     later ends the connection, however the bytes written after it move
//     (a server that reads and never answers is found while the
//     application keeps writing). Before that, while the kernel holds
//     bytes of ours, the link is dead only once the peer acknowledged none
//     of them for an ack bound (slow links go on; a stuck one is found
//     within about one and a half ack bounds); once it holds none, a
//     written request unanswered for an ack bound is dead as above (if a
//     look during that wait found bytes of ours waiting, the bound runs
//     from the look that found them all acknowledged, so a slow link is
//     not cut as soon as its queue drains; bytes held right after the
//     <r/>'s write, as they nearly always are, do not count), and one not
//     written yet is held above the kernel and left to the write bound.
//     In each case a stanza read from the server within the ack bound is
//     progress, as above, up to the same cap (a server blocked writing to
//     a client slow to read may take none of its bytes until the client
//     reads on).
//   - the kernel, where the connection has TCP_USER_TIMEOUT (Linux): a
//     write ends once the peer's TCP acknowledged no byte, or took none (a
//     full receive window), for that long. The xmpptrack client's dialer
//     sets it to 35 s.
//   - the State's write bound, everywhere, as a backstop (a wrapper that
//     holds writes in user space, another system, a connection whose
//     socket is not found): an <r/> or <enable/> that the State decided
//     to send and that has not got out after 24 times AckTimeout (2
//     minutes at the default) ends the connection as above; the
//     AckTimeoutError's Bound is then that write bound. Writes that take
//     longer than that, together, on a slow but working link are cut (a
//     single 1 MiB stanza at under about 70 kbit/s at the default). A
//     write deadline that the application sets on the connection bounds a
//     write too.
//
// So on Linux over TCP a frozen link is found within the ack bound (5 to
// 10 s at the defaults), or about one and a half of it when our bytes
// wait in the send buffer. Elsewhere, or where the socket is not found,
// the written <r/>'s ack bound applies as is (a link slow enough that the
// send buffer takes longer than the bound to drain is then cut; how often
// that happens is not measured, AckTimeout is the knob), and a request
// that cannot get out (a stanza larger than the room left in the send
// buffer, or a burst that fills it before the next <r/>) is found only
// by the write bound.
//
// A write that blocks before any <r/> is booked starts no bound at all:
// if the link freezes while idle and the next write blocks at once (one
// write larger than the room left in the socket buffer), nothing is
// counted and no request rule fires until the idle probe books one,
// IdleProbe after the last exchange (never with IdleProbe disabled), which
// then gets the bounds above (on Linux over TCP, the socket's progress
// finds it within about one and a half ack bounds). While the requester is
// itself blocked re-sending the messages of a lost stream after
// <enabled/>, or Start retransmits after <resumed/>, no <r/> can be booked
// at all: such a write ends only when the connection is closed (as when
// Start's ctx ends; a session's Close would wait for the same output) or
// the kernel fails it (TCP_USER_TIMEOUT, or the operating system's own
// TCP timeout: about 15 minutes on Linux by default). A resumed
// connection that dies of the write bound, or of the socket's lack of
// progress, before any <a/> is a failed
// resumption (see "Failed resumptions"), as one that dies of the ack
// bound; so is one that ends otherwise (the kernel's ETIMEDOUT, or any
// loss) while a request of ours had waited longer than the ack bound to
// get out.
//
// An idle connection is probed: when no <r/> was sent and no <a/>
// received for Config.IdleProbe (default 30 s), the requester sends an
// <r/>, so a dead link is found (within IdleProbe plus the bound) before
// the next message needs it, and NAT state stays fresh.
//
// # Failed resumptions
//
// A resumption that the server accepted can still fail. Prosody 0.12.3
// keeps feeding the resumed connection's bytes to the XML parser of the
// connection that was cut; if the cut fell inside a stanza, that parser
// swallows what follows, and the stream either never acknowledges anything
// again or dies with not-well-formed, policy-violation or stanza-too-big.
// Resuming once more would hit the same parser. So a resumed connection
// that ends, before the server acknowledged anything on it (no <a/> that
// made progress, see "Dead connections"), with
// ErrAckTimeout, with the kernel's ETIMEDOUT (TCP_USER_TIMEOUT ended a
// stuck write), while a request of ours had waited longer than the ack
// bound to get out (see "Dead connections"), or with one of those three
// stream errors is a failed resumption: the State forgets the stream, the next connection binds a
// new session, and the unacknowledged stanzas go to the Policy as after
// <failed/> (messages are re-sent by default). The recipient may get a
// message twice (the id is the same); it never misses one. The rule on a
// request that waited to get out cannot tell a stuck output from a slow
// one: a resumed connection on a slow link, whose <r/> waits behind a
// large stanza, that then ends for another reason (a reset, a NAT
// dropping it) starts a new session instead of resuming once more, which
// costs possible duplicates, never a loss. Stanzas read from the server
// put off the ack bound (see "Dead connections"): a broken resumed stream
// on which the server still routes stanzas to us, one at least every ack
// bound, and acknowledges nothing, is found only at the cap, 24 times
// AckTimeout; our stanzas wait unacknowledged until then (none is lost).
//
// # Policy violations
//
// A server closes a stream with policy-violation when something broke its
// rules (a spam filter, a size or rate limit), and the session cannot be
// resumed. Which stanza was refused is not said, and the unacknowledged
// ones include innocent stanzas written after it (or before it, whose ack
// was still on its way). So no message is failed on that word alone:
//
//   - the unacknowledged stanzas go to the Policy on the next connection,
//     as for any stream that cannot be resumed;
//   - the messages to re-send are re-sent carefully: one at a time, each
//     followed by an <r/>, the next only once the last was acknowledged
//     (one round trip per message; WaitEnabled returns once they are all
//     through, so new messages wait for them);
//   - if the server closes that stream with policy-violation again while
//     one re-sent message is the only one unacknowledged, the refusal is
//     pinned on it: when the next connection starts, it is reported to
//     Config.OnRefused (OnLost if unset) with the stream error, and not
//     re-sent again. The others carry on.
//
// A policy violation right after a resumption is a failed resumption (see
// above), not a refusal.
//
// # Resumption
//
// When the last stream was resumable and the server offers stream
// management, BindOrResume sends <resume previd h/> instead of binding. On
// <resumed h/> the stanzas h covers are acknowledged and Start retransmits
// the others, in their original order with their original bytes (and ids),
// followed by the messages of an earlier lost stream whose re-send (see
// below) the lost connection interrupted, before the application can send
// anything new; the server retransmits what it had queued, which arrives
// in the handler like any stanza. The session (full JID, presence,
// roster, room joins) is the old one: do not announce presence again
// (XEP-0198 §5).
//
// The h of <resume/> is the inbound count bounded by Config.Handled, as
// for any ack, and never below an h sent before; it is recorded as told
// (Resumption.Told). A client whose Handled hook returns what its store
// saved thus never claims a stanza still in its callbacks, even when it
// resumes within the same process: a kill right after loses nothing, and
// a successor claiming the saved count never claims less than the server
// was told. The server sends again what the claim does not cover, and the
// application gets those stanzas a second time. From Tees on, the inbound
// count (Resumption.Handled) is that bounded count, so a store saving it
// then does not cover them either.
//
// A stream restored in a new process (State.Restore) is resumed the same
// way, with one exception: a stanza the store kept without its number
// (written ahead, and the process died before the number was saved) is
// numbered after the saved outbound count, and the h of <resumed/> or
// <failed/> never settles it, even when it covers that number, since
// stanzas the store does not keep (receipts, markers, IQ results) count in
// h too. It is sent again with the same id and logged at Warn: the
// recipient may get it twice, and can tell by its id; it is never lost.
// With Config.OnAmbiguous, those stanzas are held back instead, uncounted
// on the stream, for the caller to prove or disprove with
// State.ResolveAmbiguous (a client looks them up in the account's own
// message archive): the proved ones are acknowledged, the rest sent again.
// The first resumption after Restore then holds back every restored
// message its h does not cover, too: a server may answer <resume/> with
// the count of the dead connection's session while that session still
// routes what it had read (ejabberd 23.01), so h does not prove that the
// server lacks them. Later resumptions retransmit as usual.
// The saved count must come with every number up to it: Config.OnWritten
// reports a number before Resumption counts it.
//
// # Streams that cannot be resumed
//
// When resumption fails (<failed/>), is impossible (stream management
// refused, not offered, or enabled without resumption), or the stream was
// ended by a stream management error, the stanzas covered by the h of
// <failed/> are acknowledged, and the Policy decides the fate of the
// others: Resend (default) re-sends messages on the new stream with the
// same id and a XEP-0203 <delay/> stamped with the original time, and
// reports presence and IQ stanzas lost; ReportLost reports them all to
// OnLost (the tracking layer turns that into ABORTED). Every stanza ends in
// OnAcked, OnLost or a re-send announced by OnResend: none vanishes. The
// application must set the new session up again (presence, rooms).
//
// Start reports what the Policy reports lost, writes <enable/>, and holds
// the messages to re-send until the server answered it. Re-sending them
// right after <enable/> would put them on a stream not yet known to be
// resumable: a connection lost during the re-send would make the next
// connection re-send them all again, and frequent losses would deliver the
// backlog over and over without getting through. So the connection's ack
// requester re-sends them once the handler processed the answer:
//
//   - <enabled/>: they are counted on the new stream, with <r/> requested
//     as for any stanza; a connection lost during the re-send is resumed,
//     and only what the server did not acknowledge is retransmitted;
//   - <failed/>: they are re-sent without stream management; OnResend is
//     their last callback (rely on receipts);
//   - the connection ends first: nothing was re-sent and no callback fired
//     for them; they wait for the next connection with the rest.
//
// If the server does not offer stream management, Start re-sends them
// itself. The Policy always sees the unacknowledged stanzas of every
// earlier connection in the order they were first written (re-sent and
// retransmitted copies keep their place, and their Stanza.Sent).
//
// When the server answers <enable/> with <failed/>, stream management is
// off for the connection; stanzas written since <enable/> leave the queue
// without a callback, since no ack can ever cover them (they were written
// to a live stream; rely on receipts).
//
// A <failed/> that answers nothing (no <enable/> awaits its answer: the
// answer came already, or the stream was resumed) changes nothing: it is
// logged at Warn and ignored, stream management stays on, both counts go
// on, and every unacknowledged stanza still waits for an ack, a
// retransmission or the Policy. So does an <enabled/> (logged at Warn) or
// a <resumed/> (logged at debug level) that answers nothing: the SM-ID and
// the counts stay (an inbound count taken back to 0 would ack below an h
// sent before). A server that did drop stream management
// stops answering <r/>, and the ack bound ends the connection (see "Dead
// connections"); the next one resumes, or the Policy takes the stanzas.
//
// # Ordering
//
// Retransmissions after <resumed/> go out before Start returns, so before
// anything the application sends next, in their original order. Re-sends
// of a lost stream go out in their original order too, but after the
// answer to <enable/>, a round trip after Start returned: what the
// application writes in between precedes them on the wire. An application
// that needs the original order calls WaitEnabled before sending.
//
// # Callbacks and goroutines
//
// OnAcked, OnLost, OnResend and OnRefused run outside the package's locks,
// one at a time, in order: on the Serve goroutine for <a/> (inside the
// handler), on
// the connection's ack requester goroutine for the re-sends held for the
// answer to <enable/>, and on the goroutine that calls Start for what
// negotiation decided (the h of <resumed/> or <failed/>, what the Policy
// reports lost, a refusal pinned on a message, re-sends without stream
// management) and Abandon. No lock of the package is held while they run:
// they may call any method of the State (OnLost may call Abandon); the
// callbacks such a call causes run after the current one returns, on the
// goroutine already delivering. They
// must not block and must not send on the session (the Serve goroutine may
// hold the session's output lock): hand work to another goroutine. The
// tees run inside mellium's Read and Write, under its locks: they only
// count, queue and signal, and never call user code.
//
// # What the application observes while reconnecting
//
// When the connection breaks, Serve returns and sends on the old session
// fail. The stanzas written before stay queued: no callback fires for them
// while disconnected, Info().Unacked counts them, and Reserve blocks once
// MaxUnacked are waiting or reserved. The client reconnects with backoff; the server
// keeps the stream resumable for Info().Max after the loss (reconnect well
// within it, to Info().Location if set and trusted). After a successful
// resumption, Start reports the stanzas <resumed/> acknowledged and
// retransmits the rest, the server's queued stanzas arrive, and the
// session continues as if uninterrupted (Info().Resumed). After a failed
// resumption, the application gets a new session, OnLost calls before
// Start returns, and the re-sends with their OnResend calls once the
// server enabled stream management (WaitEnabled). Stanzas the server had
// queued for the old session are its business: XEP-0198 lets it store
// them offline or bounce them with errors, which then arrive on the new
// session.
//
// # Input limits
//
// mellium's XML decoder (encoding/xml) buffers a whole text node or tag
// before anyone sees it: 400 MB of whitespace keepalives, or a 50 MB
// body, would be held in memory. The inbound tee already sees every byte,
// so it enforces limits (Config.MaxStanzaSize, 1 MiB by default, like
// Prosody's; MaxWhitespace, 64 KiB; MaxStreamErrorSize, 64 KiB) from the
// connection's first byte, negotiation included. At the first byte over a
// limit the tee fails the read that brought it: the decoder gets none of
// those bytes and reads no more, Serve returns a *LimitError (matching
// ErrInputLimit), and mellium answers with the policy-violation stream
// error it converts to. During negotiation NewSession fails instead
// (mellium may describe the input it got cut short rather than the
// limit). Either way the connection ends within one read of the limit;
// reconnect as after any loss.
//
// # Limits
//
//   - Only xmpp.NewNegotiator provides tees; a custom Negotiator must feed
//     Tees' writers itself, above TLS. WebSocket framing (RFC 7395) is not
//     supported.
//   - h counts stanzas read from the connection. mellium hands every
//     complete stanza read to Serve before it reports a read error, so they
//     are handled, unless Serve stops for another reason (a handler error).
//   - A stanza whose write fails is not seen by the tee: it is neither
//     counted nor queued, and the caller must handle the Send error.
//   - Retransmission re-encodes the captured bytes through Session.Send:
//     the XML is the same, the bytes may differ (quotes, namespace
//     declarations).
//   - IQ responses that arrive after resumption for requests of the old
//     session reach the handler: their SendIQ waiters are gone.
//   - mellium v0.23.0 does not flush the stream error Serve writes for a
//     handler error; the handler therefore writes handled-count-too-high
//     and bad-format itself.
//
// The SM-ID is a resumption credential: it is kept opaque, rejected beyond
// 4000 bytes (the stream is then not resumable) and logged at debug level
// only.
package sm // import "github.com/xmpptrack/xmpptrack/sm"

// NS is the XEP-0198 namespace.
const NS = "urn:xmpp:sm:3"

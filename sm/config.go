package sm

import (
	"log/slog"
	"time"
)

// Defaults for the zero values of Config.
const (
	// DefaultAckEvery is the default Config.AckEvery. One <r/> (and the <a/>
	// that answers it) per 8 stanzas keeps the overhead of a busy sender
	// under one small element per 8 stanzas, the performance budget of this
	// project, while the queue of unacknowledged stanzas stays short.
	DefaultAckEvery = 8

	// DefaultAckDelay is the default Config.AckDelay. A stanza written
	// behind unacknowledged ones waits at most this long for an <r/> that
	// covers it (a stanza written on an idle link gets its <r/> at once),
	// so it is acknowledged within 10 ms plus one round trip, and messages
	// sent within 10 ms of each other share one <r/>.
	DefaultAckDelay = 10 * time.Millisecond

	// DefaultMaxUnacked is the default Config.MaxUnacked: at about 300 bytes
	// per stanza it bounds the queue to a few MiB, and it leaves ample room
	// for the stanzas written during one round trip at thousands of
	// messages per second.
	DefaultMaxUnacked = 4096

	// DefaultAckTimeout is the default Config.AckTimeout. Servers answer an
	// <r/> within a round trip plus the time to process what was written
	// before it; five seconds without any <a/> is far beyond that on a live
	// link, and short enough that a frozen connection is replaced long
	// before the server's resumption window (minutes) closes.
	DefaultAckTimeout = 5 * time.Second

	// DefaultIdleProbe is the default Config.IdleProbe: an idle connection
	// is checked every 30 seconds, below the idle timeouts of common NATs
	// and firewalls, at the cost of one <r/> and one <a/> (about 60 bytes).
	DefaultIdleProbe = 30 * time.Second

	// DefaultMaxStanzaSize is the default Config.MaxStanzaSize: 1 MiB,
	// Prosody's default limit for a client's stanza (c2s_stanza_size_limit)
	// and far above what any message, roster or history page takes.
	DefaultMaxStanzaSize = 1 << 20

	// DefaultMaxWhitespace is the default Config.MaxWhitespace: 64 KiB of
	// text between two top-level elements. Servers send a single space or
	// newline as a keepalive.
	DefaultMaxWhitespace = 64 << 10

	// DefaultMaxStreamErrorSize is the default Config.MaxStreamErrorSize:
	// 64 KiB for a <stream:error/> with its text.
	DefaultMaxStreamErrorSize = 64 << 10

	// maxMaxUnacked keeps the unacknowledged window far below 2^31 so that
	// counter differences are unambiguous modulo 2^32.
	maxMaxUnacked = 1 << 24
)

// Policy says what happens to stanzas that the server never acknowledged
// when their stream cannot be resumed (the server answered <resume/> with
// <failed/>, did not offer stream management again, sent a stream error that
// made the session non-resumable, or the session was enabled without
// resumption).
//
// Stanzas covered by the h attribute of <failed/> are acknowledged first
// (OnAcked); the policy applies to the rest, in their original order. Every
// such stanza ends in exactly one of OnAcked, OnLost, or (Resend only) a
// re-send on the new stream announced by OnResend.
type Policy uint8

const (
	// Resend (the default) re-sends each unacknowledged message on the new
	// stream, with its original id and attributes and with a XEP-0203
	// <delay xmlns='urn:xmpp:delay' stamp='...'/> child carrying the time
	// it was first written (unless it already has a delay element). This is
	// what XEP-0198 §4 recommends and what Conversations and Dino do; the
	// recipient can drop duplicates by id. Presence and IQ stanzas are not
	// re-sent, because their meaning is tied to the old session (IQ waiters
	// are gone, presence is announced again by the application): they are
	// reported to OnLost.
	Resend Policy = iota

	// ReportLost reports every unacknowledged stanza to OnLost and re-sends
	// nothing.
	ReportLost
)

// String returns "resend" or "report-lost".
func (p Policy) String() string {
	switch p {
	case Resend:
		return "resend"
	case ReportLost:
		return "report-lost"
	}
	return "unknown"
}

// Config configures a State. The zero value is ready to use: resumption is
// requested, acks are requested by the default policy, and no callbacks are
// called.
type Config struct {
	// NoResume, if set, enables stream management without asking for
	// resumption (<enable/> without resume='true').
	NoResume bool

	// Max is the resumption time in seconds to ask the server for (the max
	// attribute of <enable/>); 0 leaves it to the server. The server's own
	// value, which is the one that counts, is in Info.Max.
	Max uint32

	// AckEvery is how many stanzas may be written after the last <r/> before
	// a new <r/> is sent, provided no earlier <r/> is still unanswered.
	// 0 means DefaultAckEvery; 1 requests an ack after every stanza.
	AckEvery int

	// AckDelay is the longest time a written stanza waits before an <r/>
	// covering it is sent. When it expires an <r/> is sent even if another
	// one is unanswered: that is the only case with two <r/> in flight.
	// It also bounds how long a stanza coalesced during a burst (see
	// "Pacing" in the package documentation) may wait in the kernel: the
	// last stanzas of a burst may reach the server up to AckDelay later
	// (or at its delayed TCP acknowledgement, if sooner), though never
	// the <r/> that covers them.
	// 0 (or a negative value) means DefaultAckDelay.
	AckDelay time.Duration

	// AckTimeout bounds the wait for the server's answer to an <r/> or to
	// <enable/>: once a request has been written and stayed unanswered for
	// AckTimeout plus four times the smoothed round trip (measured from
	// earlier <r/> to their <a/>; this part at most AckTimeout again,
	// Info.AckBound says the total), with no <a/> and no stanza received
	// meanwhile, the connection is dead (frozen: no FIN, no RST, bytes
	// stop flowing); stanzas read from the server put that off for at
	// most 24 times AckTimeout with no <a/> (see "Dead connections"). A
	// request that cannot get out (behind a stuck write) is found by the
	// TCP socket's lack of progress (Linux), the kernel's TCP_USER_TIMEOUT
	// where set, and by 24 times AckTimeout in any case (see "Dead
	// connections"). The State then expires
	// the connection's deadlines, so that Serve returns ErrAckTimeout at
	// once, and closes the connection; reconnect: the stream is resumed. 0
	// means DefaultAckTimeout; a negative value disables both bounds.
	AckTimeout time.Duration

	// IdleProbe is how long a connection may go without an <r/> sent or an
	// <a/> received before the State sends an <r/> to check that the link
	// is alive (AckTimeout then applies), so that a dead connection is
	// found before the next message needs it. 0 means DefaultIdleProbe; a
	// negative value disables probing.
	IdleProbe time.Duration

	// MaxUnacked bounds the stanzas kept for re-sending: Reserve blocks
	// while this many stanzas wait for an ack or were reserved (Slots out).
	// 0 means DefaultMaxUnacked. Stanzas written without Reserve (mellium's
	// own replies, other packages, the xmpptrack client's Handler output)
	// are still kept, so the queue may exceed it by those.
	//
	// The xmpptrack client's Send takes its place before it writes the
	// message ahead to its store and holds it through the write: the place
	// must be held until the queue holds the stanza, and taken before the
	// write-ahead, a Send that finds no room (a full queue, a long
	// disconnection) waits with nothing stored and, when its ctx ends,
	// leaves no record behind. So MaxUnacked also bounds the Sends between
	// their write-ahead and their write, and with it the messages one of
	// the store's group commits gathers: set it at least as high as the
	// number of concurrent senders whose commits should be gathered.
	//
	// Receipts and markers (ReserveAnswers) count the stanzas unacknowledged
	// and the places other answers hold, not the places senders hold: a
	// stalled store's write-aheads must not hold back the peer's proofs.
	// So the queue may exceed MaxUnacked by at most the places senders
	// hold (MaxUnacked at most), besides the stanzas written without
	// Reserve.
	MaxUnacked int
	// Window bounds the stanzas in flight on a connection (written, not yet
	// acknowledged) that Pace lets through; see DefaultWindow for why a
	// burst should not run far ahead of the server's acks. 0 means the
	// default window: DefaultWindow while the server answers promptly,
	// down to MinWindow while it queues what we send (see "Pacing" in the
	// package documentation). A positive value is a fixed window (256:
	// the default before it followed the server); a negative value
	// disables the window.
	Window int

	// MaxStanzaSize, MaxWhitespace and MaxStreamErrorSize are the input
	// limits, in bytes, of every connection, from its first byte (so during
	// negotiation too): the size of one top-level element the server sends
	// (a stanza, a stream feature list, a SASL challenge, a stream
	// management element; comments and processing instructions count
	// too), of one run of text between two top-level elements (whitespace
	// keepalives), and of a <stream:error/>. mellium's XML decoder buffers
	// a whole text node or tag before anyone can look at it; without
	// limits, a hostile server or a man in the middle can make the client
	// buffer gigabytes. The inbound tee counts every byte and stops the
	// connection at the first byte over a limit: Serve (or NewSession)
	// returns a *LimitError, mellium sends the policy-violation stream
	// error, and the application reconnects. 0 means the default
	// (DefaultMaxStanzaSize, DefaultMaxWhitespace,
	// DefaultMaxStreamErrorSize); a negative value removes the limit.
	MaxStanzaSize, MaxWhitespace, MaxStreamErrorSize int64

	// Policy chooses what happens to unacknowledged stanzas when a stream
	// cannot be resumed. The zero value is Resend.
	Policy Policy

	// OnAcked is called once for each stanza the server acknowledged, in
	// the order the stanzas were written.
	OnAcked func(Stanza)

	// OnLost is called for each unacknowledged stanza that will never be
	// acknowledged or re-sent: all of them under ReportLost, presence and
	// IQ stanzas under Resend, everything still queued when Abandon is
	// called, and a restored stanza whose Raw is not one whole XML element
	// when it would be written again (see State.Restore).
	OnLost func(Stanza)

	// OnRefused is called for a message the server refused by closing the
	// stream with a policy-violation stream error, when the refusal can be
	// pinned on that message: after a first policy violation, the
	// unacknowledged messages are re-sent one at a time on a fresh stream,
	// each waiting for its ack, and a message that is the only one
	// unacknowledged when the server closes that stream with
	// policy-violation again is refused. err is that stream error (a
	// mellium stream.Error). It is called when the next connection starts
	// (Start), and the message is not re-sent again. Without OnRefused,
	// the message goes to OnLost. See the package documentation, "Policy
	// violations".
	OnRefused func(s Stanza, err error)

	// OnResend is called, under the Resend policy, just before a message of
	// a stream that could not be resumed is re-sent on a new stream: once
	// the server answered <enable/> on it (on the connection's ack
	// requester goroutine), or during Start when the server does not offer
	// stream management or the re-send continues after a resumption. It
	// may be called again for the same stanza if that connection fails
	// before the stanza was written. Retransmissions after a successful
	// resumption belong to the same stream and are not reported.
	OnResend func(Stanza)

	// OnAmbiguous, when set, takes over the stanzas that a resumption
	// cannot settle by its h: stanzas restored without a recorded number
	// (see State.Restore) once h covers one of their guessed numbers, and
	// those an earlier stream left in doubt (Stanza.Ambiguous). Any of them
	// may have reached the server. Instead of being sent again at once
	// (the default: logged at Warn, the recipient may get them twice), they
	// are held back, uncounted on the stream, and handed to OnAmbiguous
	// once Start has written the retransmissions, on Start's goroutine; the
	// caller looks for proof (the account's own message archive, say) and
	// calls State.ResolveAmbiguous, which acknowledges the ones it proved
	// and writes the others again. It must not block. Held stanzas count as
	// unacknowledged (Info.Unacked, Reserve); a failed resumption hands
	// them to the Policy, Abandon to OnLost.
	//
	// With OnAmbiguous set, the first resumption after Restore also holds
	// back every restored message that its h does not cover, numbered or
	// not, where it would otherwise retransmit it: a server may answer
	// <resume/> with the count that the session of the dead connection
	// had reached when it handed over, while that session still routes
	// what it had read from the connection (ejabberd 23.01), so such an h
	// does not prove that the server lacks them. The Seq reported for a
	// held stanza is the number it had on the restored stream, which the
	// stream no longer counts (the next number goes to the next stanza
	// written): a caller that records numbers must void it. A later
	// resumption within the process retransmits what its h does not
	// cover, as without OnAmbiguous.
	OnAmbiguous func([]Stanza)

	// OnWritten is called for each stanza counted on the stream (a first
	// write, a retransmission or a re-send: a copy gets a new number),
	// with its number in Seq, so that a durable store can record it (see
	// State.Restore). It runs on the writing goroutine, inside mellium's
	// output lock and the State's own lock, before the number shows in
	// Resumption().Sent: a Resumption taken after it covers every stanza
	// reported so far. It must be quick, must not block or write, and must
	// not call the State's methods.
	OnWritten func(Stanza)

	// Handled, when set, bounds the inbound count the State acknowledges:
	// every <a h/> it sends (the answer to the server's <r/>, SendAck)
	// carries Handled(received) instead of received, the count of
	// stanzas received, so that the server keeps, and replays when the
	// stream is resumed, the stanzas the application has not finished with
	// yet. A durable client returns the count its store has saved, so that
	// a process killed with stanzas still in its callbacks gets them again
	// from the server, and its successor never claims less than was
	// acknowledged (servers refuse that: Prosody 0.12 ends the session).
	// The result is clamped: never above received, never below an h sent
	// before (comparing modulo 2^32). The h of <resume/> is bounded the
	// same way, also when the stream is resumed within the same process:
	// a process killed right after it must not have claimed stanzas still
	// in its callbacks, and a successor claiming its saved count must not
	// claim less than that h. The server then sends again the stanzas the
	// claim did not cover, and the application gets them a second time
	// (by their ids it can tell). Nil: every stanza received is
	// acknowledged. It runs on the goroutine that reads the stream
	// (answering <r/>), on the callers of SendAck and Tees, and
	// on the goroutine that negotiates a resumption, without the State's
	// lock: it must be quick and must not call the State's methods other
	// than Resumption and Info.
	Handled func(received uint32) uint32

	// Logger receives diagnostics; nil means no logging. The SM-ID, a
	// resumption credential, is only ever logged at debug level.
	Logger *slog.Logger
}

// withDefaults returns c with zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.AckEvery <= 0 {
		c.AckEvery = DefaultAckEvery
	}
	if c.AckDelay <= 0 {
		c.AckDelay = DefaultAckDelay
	}
	if c.MaxUnacked <= 0 {
		c.MaxUnacked = DefaultMaxUnacked
	}
	c.MaxUnacked = min(c.MaxUnacked, maxMaxUnacked)
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.IdleProbe == 0 {
		c.IdleProbe = DefaultIdleProbe
	}
	c.MaxStanzaSize = limitOrDefault(c.MaxStanzaSize, DefaultMaxStanzaSize)
	c.MaxWhitespace = limitOrDefault(c.MaxWhitespace, DefaultMaxWhitespace)
	c.MaxStreamErrorSize = limitOrDefault(c.MaxStreamErrorSize, DefaultMaxStreamErrorSize)
	return c
}

// limitOrDefault maps 0 to def and a negative value to 0 (no limit).
func limitOrDefault(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

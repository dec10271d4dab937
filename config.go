package xmpptrack

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"

	"mellium.im/xmpp"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Config configures a Client. The zero value is ready to use: certificate
// verification on, stream management on, a 5-minute tracking window, receipts
// answered and markers available.
type Config struct {
	// Addr is the server's host:port. Empty means looking up the account's
	// domain: its xmpp-client DNS SRV records, or the domain on port 5222
	// where it has none. With DirectTLS every xmpps-client record comes
	// first, whatever the priorities, and port 5223 last; an xmpps-client
	// record "." rules out the domain's own ports. The next address is
	// tried after any failure to connect to one (or, with direct TLS, to
	// complete the handshake) within its share of the time; a STARTTLS
	// address that connects and then stays silent keeps the rest of
	// Dial's time.
	Addr string
	// TLSConfig is used for STARTTLS or direct TLS. Nil means the system roots
	// with the account's domain as server name. It is cloned.
	TLSConfig *tls.Config
	// DirectTLS connects with TLS from the first byte (XEP-0368) instead of STARTTLS.
	DirectTLS bool
	// AllowPlaintext logs in without TLS (STARTTLS is not attempted): for
	// loopback tests only. It cannot be combined with TLSConfig, DirectTLS or
	// RequireChannelBinding.
	AllowPlaintext bool
	// RequireChannelBinding refuses to log in without a SCRAM -PLUS mechanism.
	// By default -PLUS is used only where its channel binding is known to work:
	// tls-unique on TLS 1.2, and on TLS 1.3 only when the server announces
	// tls-exporter (XEP-0440); ejabberd 23.01 offers -PLUS on TLS 1.3 but
	// rejects the binding.
	RequireChannelBinding bool

	// MaxPending bounds the trackers that are not settled: Send waits at the
	// bound and TrySend fails with ErrTooManyPending. It also bounds the
	// state changes waiting for OnStateChange and the trackers' callbacks
	// (1024 + 4*MaxPending). Zero means 100,000; a negative value means no
	// bound on either. The bound admits new messages: Dial tracks every
	// unsettled message a Store kept whatever their number (Send then waits
	// until the pending ones fall below it).
	MaxPending int
	// Window is the default tracking window: when it ends, a message without
	// proof of delivery to the recipient becomes TIMED_OUT, and one in
	// DELIVERED_TO_RECIPIENT or ERROR stops being tracked. Zero means 5
	// minutes; a negative value means none; windows are capped at 24 days.
	Window time.Duration
	// OnStateChange is called for every state change of every message, on a
	// goroutine of the library, in order, before the tracker's own
	// callbacks. Changes wait for it in a bounded queue: when it falls 1024 +
	// 4*MaxPending changes behind, Send waits and TrySend fails until it
	// catches up (see package tracking, "Callbacks"). A panic in it crashes
	// the program. With a Store, a CLOSED whose Response.Err matches
	// ErrStillPending is not final (see Store); the store records each
	// change as it is made, not when its callbacks run, so neither the
	// record nor the acks the client sends wait for OnStateChange or the
	// trackers' callbacks: one that does not return holds back only the
	// callbacks after it and, through the bounded queue, Send.
	OnStateChange func(t *tracking.MessageTracker, from, to tracking.MessageState, resp *tracking.Response)

	// Store, if set, keeps a durable record of the messages: each is
	// committed to it, with its stanza, before its first byte is written
	// (if that fails, Send writes nothing and returns a nil tracker and an
	// error matching ErrNotRecorded; Stats.StoreErr holds the failure until a
	// later commit, of a message or of recorded changes, succeeds),
	// and every state change
	// is recorded with its evidence (in order, committed in the background;
	// while the store fails, tracking goes on and the changes are written
	// once it is back: they wait in memory, each keeping its tracker until
	// it is committed; while the store is down that is bounded by the
	// pending messages, since a Send whose commit fails makes no tracker,
	// but a store that takes write-aheads and keeps failing the recorder's
	// commits lets it grow with the send rate), as are each message's
	// stream-management number and the stream's resumption state. Dial
	// takes the store's lease of this account and resource
	// (store.ErrLocked while another process or client holds it) and
	// refuses a store whose slot for the resource belongs to another
	// account (ErrStoreAccount); Close waits (at most
	// 5 s) for the recorded changes to be committed, then releases it.
	// A lease can be lost while the client runs (store.Lease.Lost; with
	// store/postgres, another instance took it after the connection that
	// held it broke, or the database stayed out of reach): another process
	// may own the account's record and stream then, so the client stops at
	// once.
	// It commits nothing more, drops the connection without closing the
	// stream (the new owner resumes it), does not reconnect, and ends its
	// pending trackers CLOSED as Close does (the store keeps them pending
	// for the new owner); Done is closed, Err returns ErrLeaseLost, and
	// Send fails with ErrClientClosed wrapping it. Dial again to take the
	// account back once the other process is gone.
	// Closing the client does not record its pending messages as CLOSED:
	// they stay pending in the store. Their trackers in this process still
	// end CLOSED (tracking stops here), but the CLOSED change that
	// OnStateChange gets for them carries a Response whose Err matches
	// ErrStillPending: not final, the store's record (Status) says what
	// the message is. The next Dial on the store (after a redeploy or a
	// crash) takes them back: it tracks them again in their stored state
	// (a move OnStateChange is not told again) and the rest of their
	// window, ends the windows that ended meanwhile (stamped with their
	// deadline; OnStateChange is told of each TIMED_OUT, with a tracker
	// that is already settled), and resumes the
	// previous stream while the server still holds it (the server's
	// <resumed h> settles what it got; the rest is written again with the
	// same ids; the server replays every incoming stanza whose OnMessage
	// or Handler call had not returned, or whose state changes (and those
	// made before them) had not been committed: with a store, the acks the
	// client sends cover only the stanzas the store saved as finished, and
	// so does the h of a resumption, also within the process after a lost
	// connection, so an incoming stanza may be delivered twice, never
	// lost). OnMessage and Handler calls that do not return hold back the
	// acks of everything received after them, until the server ends the
	// stream at its bound (ejabberd's max_ack_queue, Prosody's
	// smacks_max_queue_size); OnStateChange and the trackers' callbacks do
	// not. When the stream cannot be resumed, the messages the server
	// never acknowledged are re-sent with their ids (or reported ABORTED
	// under sm.ReportLost), so a message the server had taken without
	// acknowledging it yet reaches the recipient twice. A message id stays
	// taken for as long as the store keeps its record (Send fails with
	// tracking.ErrDuplicateID). Status reads the
	// record. Nil keeps everything in memory. See package store.
	Store store.Store

	// StreamManagement tunes XEP-0198: ack requests, the unacked queue bound,
	// and what happens to unacked messages when a stream cannot be resumed.
	StreamManagement sm.Config

	// OnMessage is called once for each incoming message with content (a
	// body, a subject or an attachment), in arrival order, with the client
	// so that it can answer (Incoming.Reply, Client.MarkDisplayed).
	// Receipts, markers, error replies, carbons and our own messages
	// reflected by a room joined with package muc never reach it (see
	// Incoming; Client.Send of a message to such a room goes through the
	// room, so a reply to a group chat message is never handed back to
	// OnMessage). Nil means such
	// messages go to Handler like any other stanza.
	OnMessage func(c *Client, m *Incoming)

	// Handler receives, unchanged, every incoming stanza that tracking and
	// the observers did not consume and that OnMessage did not get: IQs,
	// presences, messages without content, and all messages when OnMessage
	// is nil. A mux.ServeMux works here. Nil means they are dropped
	// (receipts are still answered, and mellium answers IQ requests with
	// service-unavailable).
	//
	// A stanza whose from or to address does not parse (a server may
	// accept addresses mellium refuses) reaches neither: it is dropped,
	// counted in Stats.Dropped and logged at debug level, and the session
	// goes on.
	//
	// OnMessage, Handler and the observers' Connected and Disconnected run
	// one at a time, in order, on one goroutine of the library, never on
	// the goroutine that reads the stream: they may call any method of the
	// client, Close included. Up to 256 incoming stanzas wait for them;
	// beyond that the client stops reading until they catch up, so a slow
	// application slows the stream down (the server buffers) instead of
	// growing memory. But a callback that blocks longer than the ack bound
	// (StreamManagement.AckTimeout) while 256 stanzas wait gets the
	// connection dropped: the answer to our ack request waits unread
	// behind them, and the client reconnects and resumes. One that blocks
	// through the next connection's bound as well makes the resumption
	// fail: the session ends at the server, which bounces or stores
	// offline what it held for it. See the sm package's "Dead
	// connections" and "Failed resumptions". Evidence for our own messages
	// is applied before a stanza waits, so trackers keep moving meanwhile. While a call into
	// the client waits for what the stream brings (Send waiting for a
	// MaxPending slot or for room in the stream-management queue,
	// SendAndWait, Shutdown), the bound is 2,048 instead, so that such a
	// call made from a callback gets the ack, receipt or marker it waits
	// for; only if more than that many stanzas arrive before it does the
	// call wait until its context ends. Handler reads a
	// copy of the stanza; what it writes to its encoder is written once it
	// returns. An IQ request is answered by Handler or, if Handler writes
	// no answer, with service-unavailable; the client stops reading until
	// Handler returns from an IQ request, so answer it before waiting for
	// anything. That wait also covers the callbacks queued before the IQ:
	// with a Handler set, a callback that waits for the stream (Send
	// finding the stream-management queue full, SendAndWait) while an IQ
	// request arrives waits until its context ends, since the ack it needs
	// is read only after the IQ is answered; give such calls a deadline,
	// or make them from a goroutine of your own. What Handler writes is
	// written without waiting for room in the stream-management queue, so
	// it may exceed StreamManagement.MaxUnacked by that output (it is
	// still kept and re-sent after a resumption). An error returned by
	// Handler is logged, never fatal. A
	// panic in any callback is not recovered: the program crashes with the
	// callback's stack, as it would without the library.
	Handler xmpp.Handler
	// NoReceipts stops answering XEP-0184 receipt requests.
	NoReceipts bool
	// NoMarkers makes MarkDisplayed a no-op, for privacy.
	NoMarkers bool
	// NoCarbons leaves XEP-0280 carbons off. With carbons on, receipts and
	// markers the recipient sends to another of our devices still count.
	NoCarbons bool

	// MinBackoff and MaxBackoff bound the wait between reconnection attempts.
	// Zero means 250 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration

	// Logger receives connection events and dropped input at debug level and
	// problems at warn level. Nil means silent.
	Logger *slog.Logger

	// archiveTimeout, for tests: the bound of the archive check after a
	// resumed restart (0: archiveTimeout).
	archiveTimeout time.Duration
	// dial, for tests: opens the connection instead of TCP to Addr (an
	// in-memory one, so that a test can run in a synctest bubble).
	dial func(ctx context.Context) (net.Conn, error)
	// beforeWait, for tests: Dial calls it once the connection loop runs,
	// before it waits for the first connection to be handed out.
	beforeWait func(*Client)
}

func (c *Config) backoff() (lo, hi time.Duration) {
	lo, hi = c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = 250 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	return lo, max(lo, hi)
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

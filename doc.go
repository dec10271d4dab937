// Package xmpptrack sends XMPP messages and tracks whether they arrived.
//
// [Dial] logs in to an account and returns a [Client]. [Client.Send] sends a
// message and returns a [tracking.MessageTracker] whose state follows the
// message on evidence from the wire:
//
//	IN_TRANSIT → DELIVERED_TO_SERVER → DELIVERED_TO_RECIPIENT → SEEN_BY_RECIPIENT
//
// or ends in ABORTED, TIMED_OUT, CLOSED or ERROR.
//
// # What each state proves
//
//   - DELIVERED_TO_SERVER: our server acknowledged the stanza (XEP-0198 stream
//     management). The server took responsibility; the recipient may still be
//     offline, nonexistent, or never get it.
//   - DELIVERED_TO_RECIPIENT: a client of the recipient sent a delivery receipt
//     (XEP-0184, or a legacy XEP-0333 received marker), or a room reflected a
//     group-chat message. Nobody has necessarily read it. Receipts are optional:
//     their absence proves nothing.
//   - SEEN_BY_RECIPIENT: the recipient sent a displayed marker (XEP-0333) for
//     this message, or for a later one of the conversation after this one was
//     proven delivered (DELIVERED_TO_RECIPIENT). A marker for a later message
//     never lifts a message without that proof: the recipient may never have
//     got it (it was lost in a session that died), and XEP-0333's "everything
//     before was displayed too" holds only for messages it has. Such a
//     message keeps its state and can still get its own receipt or marker.
//   - ERROR: an error reply came back from the recipient's side. Servers also
//     bounce messages that another device of the recipient did get, so a later
//     receipt or marker lifts ERROR.
//   - TIMED_OUT: the tracking window ended without proof of delivery to the
//     recipient. The message may still arrive later.
//   - ABORTED: our server never acknowledged the message and it was not
//     re-sent: its write failed, or the stream could not be resumed and the
//     stream-management policy reports unacknowledged messages as lost. It
//     may still have been delivered: a server can process a message and die
//     before its acknowledgement reaches us.
//   - CLOSED: the application stopped tracking before any proof.
//
// # Connecting
//
// The client dials the server (the account's domain, or Config.Addr), starts
// TLS (STARTTLS, or direct TLS), verifies the certificate, and logs in with
// SCRAM (the -PLUS variants with channel binding where the server offers
// them and the binding they would use is known to work) or PLAIN over TLS.
// Login without TLS needs Config.AllowPlaintext and is meant for loopback
// tests. Stream management is enabled with resumption, carbons are enabled
// (unless Config.NoCarbons), and initial presence is sent, so that markers
// sent to our bare JID reach us.
//
// # Reconnecting
//
// When the connection drops, the client reconnects with exponential backoff
// and resumes the stream. While it is down, Send waits (bounded by its
// context), trackers keep their state, and messages the server had not
// acknowledged are re-sent with their original ids once the stream is
// resumed; acks, receipts and markers then arrive as usual. If the stream
// cannot be resumed, unacknowledged messages are re-sent on the new stream
// (with a XEP-0203 delay) or reported ABORTED, as Config.StreamManagement.Policy
// says. An authentication failure while reconnecting stops the client: Done is
// closed, Err says why, and unacknowledged messages become ABORTED. A
// temporary one (SASL temporary-auth-failure: the server cannot check
// credentials for now) is retried with backoff, like a network failure. A message
// whose write fails (the server never got it whole) is written again, with
// its id, on the next connection; contexts bound waiting, never a write in
// progress: one that ends while a write is blocked closes the connection
// rather than leave half a stanza on it. A lost connection (the server's
// side ended, reset, timed out) is dropped, never closed with
// </stream:stream> or a stream error: Prosody and ejabberd end a stream
// management session closed that way, and it could not be resumed. The
// client closes the stream on Close and Shutdown, in answer to the
// server's close, and when the server breaks stream management (an ack
// for more than was sent).
//
// A connection that freezes (no FIN, no RST: a NAT that dropped its state,
// a stalled proxy) is noticed: an <r/> unanswered for
// StreamManagement.AckTimeout (5 s, plus four round trips, counted from
// when the <r/> got out; on Linux, while our bytes are still on their way,
// from when the server's TCP acknowledged it, so a slow link carrying a
// large stanza is not cut; stanzas read from the server meanwhile put it
// off, for at most 24 times AckTimeout with no answer, so a client that
// reads the server's backlog slowly is not cut either; one whose reading
// stops, behind a callback that blocks, is) drops it,
// and idle connections are probed every 30 s; a write stuck on it is
// found by the socket's lack of progress on Linux, ended by the kernel
// (TCP_USER_TIMEOUT: 35 s in which the peer's TCP acknowledges no byte or
// takes none, on the connections the client dials on Linux; a negative
// AckTimeout does not lift it), and in any case once an <r/> has waited
// 24 times AckTimeout (2 minutes) to get out. The client then reconnects
// and resumes. A resumption the server accepted but then breaks (Prosody 0.12
// after a connection cut inside a stanza: no ack ever again, or a
// not-well-formed, policy-violation or stanza-too-big stream error before
// any ack) is treated as a failed one: the next connection starts a new
// session and re-sends what was not acknowledged. Duplicates are possible
// then, loss is not.
//
// When the server closes the stream with policy-violation (a spam filter, a
// rate or size limit), it does not say which stanza broke the rule, so no
// message fails on that alone: the unacknowledged messages are re-sent on a
// new stream, one at a time, each waiting for its ack. A message the server
// refuses again while it is the only one in flight becomes ERROR with the
// server's text (matching stanza.ErrPermissionDenied and mellium's
// stream.PolicyViolation) and is not re-sent again; the others carry on.
//
// With Config.Store, a restarted process resumes the stream of the one
// before it, and <resumed h> settles each restored message whose recorded
// stream number h covers. Every other restored message may or may not have
// reached the server: one whose number that process never recorded (it
// died within milliseconds of the write) has only a guessed place on the
// stream, and one that h does not cover may still have been routed by the
// server's session of the dead connection after the server answered with
// h (ejabberd 23.01 hands its count over while that session still routes
// what it had read). Dial holds them back and looks each up in the
// account's own message archive (XEP-0313), by its id or origin-id among
// the messages sent to its recipient from the time it was written ahead
// up to the check, before it returns (at most 10 s): found, it is settled
// as DELIVERED_TO_SERVER and not written again; not found, or when the
// query fails or times out, the server keeps no archive, or it went to a
// group chat (rooms archive apart), it is written again with its id, in
// its original order (logged at Warn): the recipient may get it twice,
// never not at all. A process killed during that check
// leaves it to the next one, which checks again. A connection lost during
// that check leaves the rest to the next resumption, which checks them
// again without holding back new messages: one written again then may go
// out after messages sent meanwhile. The archive must hold the account's
// outgoing messages (Prosody's mod_mam does by default; ejabberd's needs
// default: always).
//
// What the server sends is bounded (StreamManagement.MaxStanzaSize, 1 MiB
// per element; 64 KiB of whitespace between elements; 64 KiB per stream
// error): more ends the connection with a policy-violation stream error of
// ours, and the client reconnects.
//
// # Durable record
//
// With Config.Store (package store: store/sqlite or store/postgres), every
// message is committed to the store, with its stanza, before its first
// byte goes to the wire (Send fails and writes nothing when the store
// cannot take it), and every state change is recorded, in order.
// [Client.Status] answers for pending and settled messages, and a process
// restarted on the store takes its unsettled messages back at Dial (see
// Reconnecting). Dial returns once the stream's state is committed, so a
// process killed after Dial returns leaves its successor a stream to
// resume; Dial waits for that at most 1 s, and logs at Warn when it
// returns before the store took it (a slow, failing or refusing store). The stream of a reconnection that could not resume is committed
// as soon as it is bound, without a wait. A process killed before either
// commit (Dial not returned yet, or milliseconds after a reconnection)
// leaves a stream nobody resumes: our acks never cover the stanzas of a
// stream the store does not hold, so the server keeps what it sent to it
// until the stream times out, and then treats it as it treats that of any
// session that timed out. Without a store, trackers live in memory only.
//
// # Sending once
//
// [SendOnce] logs in, sends one message, waits until it reaches a chosen
// state (DELIVERED_TO_RECIPIENT by default) and disconnects, returning errors
// from one vocabulary (ErrAuth, ErrConnect, the stanza package's delivery
// kinds, tracking.ErrTimedOut, ...) that a send API can map to its own status codes.
// A program that sends more keeps a Client and calls [Client.SendAndWait].
//
// # Receiving
//
// Config.OnMessage receives each incoming message with content as a parsed
// [Incoming], in order, with the client to answer with ([Incoming.Reply],
// [Client.MarkDisplayed], [Client.MarkConversation]); Config.Handler
// receives every other stanza unchanged. Both run on a goroutine of the
// library, never on the one that reads the stream, behind a bounded queue
// (see Config.Handler). The client answers receipt requests itself (unless
// Config.NoReceipts) and sends displayed markers when the application calls
// [Client.MarkDisplayed]. It never answers its own messages, error messages,
// carbons, group-chat messages, receipts or markers. A stanza whose address
// does not parse is dropped and counted ([Stats]); it never ends the
// session.
//
// Once a room is joined with package muc, the room owns the client's traffic
// to it: [Client.Send] of any message to the room's bare JID (a reply built
// by [Incoming.Reply] for a group chat message, say) is sent as
// muc.Room.SendMessage sends it, as a group chat message proven by the
// room's reflection (DELIVERED_TO_RECIPIENT), and that reflection is
// consumed, so a bot that answers what it reads never answers itself; and
// [Client.MarkDisplayed] of the room or of an occupant marks the room's
// newest message. A private message from an occupant (room@service/nick,
// not of type groupchat) is a conversation with that occupant's full JID,
// which [Client.MarkConversation] marks: it tells a private message from a
// group chat message of the same occupant by its type. What the client
// writes to an occupant in private (a message [Client.Send] sends to
// room@service/nick of a room joined with package muc, a receipt or a
// marker to an occupant) carries XEP-0045's muc#user <x/>, as §7.5 asks. A
// message to a room not joined through package muc is sent as is (the room
// refuses it: we are not an occupant).
//
// # Security
//
// Receipts and markers count only from the recipient's bare JID, never from
// our own account or a third party; for a group-chat message only as the
// room's group-chat traffic (package muc), never from an occupant's private
// message, whose bare JID is the room's. A message sent to a full JID is a
// conversation with that one resource: its receipts, markers and errors
// count only from that full JID (errors also from the bare JID without a
// resource, and the domain). That is what protects a private message to a
// room occupant (room@service/nick) from the other occupants, who share the
// room's bare JID; for a person, send to the bare JID to accept evidence
// from any of their devices. Addresses are compared as mellium prepares
// them (RFC 7622's PRECIS profiles), byte for byte; a server that prepares
// localparts with the older stringprep folds some letters that PRECIS keeps
// (straße becomes strasse on Prosody and ejabberd), and evidence from the
// folded address does not count for a message sent to the unfolded one:
// address messages as the recipient's server writes the account. (Folding
// on our side would let a distinct account strasse@ on a PRECIS server
// prove messages to straße@.) The other way, an incoming private message from
// an occupant is marked displayed with a marker to the occupant's full JID,
// never to the room's bare JID; it is told from a person's message by the
// room being joined with package muc, or by the XEP-0045 muc#user <x/> that
// rooms add, which any sender may add too: it then only makes the sender's
// own messages conversations of its full JIDs, its bare JID taken for a
// room's. Carbons count only when the wrapper comes from our own account (a
// forged carbon is dropped whole, also for the application's handler), and a
// carbon of our own other device's receipt or marker is never evidence.
// Error replies count only from the recipient, its domain, or our own
// server. Peers' unknown ids, duplicates and late evidence are ignored in
// constant time with bounded memory. Receipts are answered to any sender by
// default: a bot usually talks to accounts that are not in its roster. Set
// Config.NoReceipts where that leaks presence.
package xmpptrack // import "github.com/xmpptrack/xmpptrack"

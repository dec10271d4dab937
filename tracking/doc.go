// Package tracking follows outgoing XMPP messages through the network.
//
// A [MessageTracker] holds what the wire has proved about one message. Its
// state only moves forward on evidence: a stream-management ack, a delivery
// receipt, a room's reflection, a displayed marker, an error reply, or the end
// of its tracking window.
//
// # States
//
//	IN_TRANSIT              queued or written; nothing proved yet
//	DELIVERED_TO_SERVER     our server acknowledged it (XEP-0198): the server took
//	                        responsibility; says nothing about the recipient
//	DELIVERED_TO_RECIPIENT  a client of the recipient has it (XEP-0184 receipt,
//	                        legacy XEP-0333 received) or the room distributed it
//	                        (reflection); not that anybody read it
//	SEEN_BY_RECIPIENT       the recipient displayed it (XEP-0333 displayed), or
//	                        displayed a later message after this one was
//	                        proven delivered
//	ABORTED                 our server never acknowledged it and it was not
//	                        re-sent; it may still have been delivered
//	TIMED_OUT               no proof of delivery to the recipient within the window
//	CLOSED                  the application stopped tracking before any proof
//	ERROR                   an error reply arrived; proof from the recipient still
//	                        lifts it, since bounces can be false alarms
//
// The transition graph is written once as a looplab/fsm definition (the
// README draws it); trackers run a table compiled from it.
// Evidence that arrives late, twice or out of order is a silent no-op: an ack
// after a receipt does not pull the state back, and an error after a receipt
// is ignored. A timeout or close in DELIVERED_TO_RECIPIENT or ERROR ends
// tracking without changing the state.
//
// # Settling
//
// A tracker is settled when tracking ends: it reached SEEN_BY_RECIPIENT,
// ABORTED, TIMED_OUT or CLOSED, or its window ended or it was closed in another
// state. [MessageTracker.Done] is closed then; after it nothing changes, and
// the tracker holds no index entry or timer slot.
//
// # Callbacks
//
// State-change callbacks run once per change, in transition order, one at a
// time, on a goroutine of the library; never on the goroutine that reads the
// stream or reported the evidence, and never under a lock, so a callback may
// call back into the library. Callbacks of one client share one goroutine
// that starts with the first callback, stays while callbacks keep coming,
// and ends within a second once none come, or when the client closes. A
// tracker from [NewMessageTracker] has a goroutine only while its callbacks
// are queued.
//
// A panic in a callback is not recovered: the program crashes with the
// panic and the callback's own stack, as with a panic on any goroutine. The
// library never drops one silently.
//
// Slow callbacks cost bounded memory. Evidence is applied at once (State,
// Wait and Done stay current) and the changes wait for their callbacks in a
// queue; when the queue reaches 1024 + 4×MaxPending changes, the client
// stops taking new messages (Send waits, TrySend fails with
// [ErrTooManyPending]) until the callbacks catch up. A tracker makes at most
// 4 changes, so a callback that never returns holds at most 1023 +
// 8×MaxPending changes (about 32 bytes each, plus the trackers they name),
// however many sends are attempted: with MaxPending = 10, 1,103 changes and
// about 1.5 MiB of heap in 200,000 attempted sends (the test
// TestStuckCallbackBoundsMemory measures it). Closing the client queues a
// CLOSED change for every pending tracker at once, where a callback is to
// hear of it (4.8 MB with 100,000 pending). The queue grows in blocks of
// 128 changes and keeps one block once they ran, so a backlog costs its
// changes while it waits and nothing after.
//
// A callback may call any method of the client or a tracker, Send and
// SendAndWait included. Its Send waits for a free slot like any other (the
// evidence that frees one keeps flowing), but cannot wait for the queue to
// drain, since the queue is drained by the goroutine the callback runs on:
// if a callback's Send finds the queue full it waits until its context
// ends. That takes more than about 256 messages sent (by the callback or
// other goroutines) while the callback runs, or an application already
// that far behind. Pass a context with a deadline when sending from a
// callback.
//
// # Who drives a tracker
//
// A tracker returned by the client is a read-only view: the application reads
// it ([MessageTracker.State], [MessageTracker.Response]), waits for it
// ([MessageTracker.Wait], [MessageTracker.Done]), registers callbacks and may
// [MessageTracker.Close] it; only evidence from the wire moves it, so its
// state is always proof. [MessageTracker.Advance] returns [ErrReadOnly] on
// such a tracker. A tracker from [NewMessageTracker] belongs to its owner,
// who drives it with Advance: the building block for other tracking
// implementations.
//
// # Correlation
//
// The client keys every piece of evidence by conversation and message id. The
// conversation is the address the message was sent to: a bare JID (a person,
// whose every resource may answer, or a room) or a full JID (one resource,
// or one room occupant for a private message, and only it may answer: the
// other occupants share the room's bare JID and must not speak for it); evidence for unknown ids, other
// conversations, duplicates and late evidence is ignored in O(1) (O(log n)
// for an id the client made, once trackers settled out of order). It bounds
// the number of pending trackers and ends windows with one timer for all
// trackers. A pending message sent without an id takes about 43 bytes of
// heap when messages are sent in bursts, and up to about 62 when they are
// sent a millisecond or more apart (a 16-byte registration mark for each
// millisecond in which one was sent); one with an id given by the caller
// (or reloaded from a store) about 147, id included (see Ids). Each peer
// with messages pending adds about 160 bytes (its conversation), and 160
// more once it sent a message while ours were pending: with one message
// pending per peer, about 205 to 365 bytes per message. Memory follows
// the pending trackers: settled ones are dropped in amortized O(1) each,
// and may be held until then, up to about as many as are pending.
//
// # Ids
//
// A message sent without an id gets one the client makes: its tracker's
// number in the client, encrypted (AES) under a key drawn at random for
// each client, 22 URL-safe characters. The client reads the number back
// from evidence, so the tracker holds no id and no map holds the tracker:
// ID formats the id on each call. Such ids are as unpredictable as random
// ones (XEP-0359 asks that ids be unpredictable): another party cannot tell
// the next one, nor how many messages the client sent between two it saw,
// and a string the client did not make names none of its messages but by a
// 2^-64 chance. That unpredictability is not what protects the trackers,
// though: evidence counts only from the message's conversation, as above,
// and only for a message still pending. An id the caller gives (or one
// reloaded from a store, made by another process) is kept with the tracker
// and in a map, at about 100 bytes more per pending message: the gateway,
// package muc's room messages, SendOnce and SendAndWait take that path,
// since they need the id before the message is sent.
//
// Decisions where the protocols leave room:
//   - A displayed marker lifts the message it names, and an earlier pending
//     message of the conversation only when that one is proven delivered: in
//     DELIVERED_TO_RECIPIENT when the marker arrives (an ERROR lifted by a
//     receipt included). XEP-0333 lets a marker stand for every earlier
//     message, assuming the recipient has them all; that fails whenever
//     messages are lost (a recipient killed while the server acked messages
//     into its dead session displays a later one after it comes back), and
//     would claim SEEN for messages it never got. Earlier messages without
//     proof keep their state and can still get their own receipt or marker;
//     one proven after the marker is lifted by the next marker. A marker may
//     name one of our messages or one of the last few the peer sent us.
//   - "Earlier" is wire order: a marker covers the messages written to the
//     stream before the marked one (and the peer's messages received before
//     it). With several goroutines sending at once, the order of Send calls
//     is not the order on the wire, and a message written after the marked
//     one has no proof the recipient saw it. A message written again after a
//     reconnection takes its place at the new write. Where the server offers
//     no stream management, writes are not reported and the order of Send
//     calls stands in for it.
//   - A legacy received marker is a per-message receipt, not "up to here".
//   - A marker that carries a thread covers only messages sent with that thread.
//   - Error replies count when they come from the recipient (any resource of
//     a bare JID; exactly the full JID a message was sent to), from its bare
//     JID without a resource (a room speaks for itself), from its domain, or
//     from our own server; in a room, never from an occupant.
package tracking // import "github.com/xmpptrack/xmpptrack/tracking"

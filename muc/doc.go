// Package muc sends tracked messages to XEP-0045 group chats.
//
// [Join] enters a room with an [xmpptrack.Client]; [Room.Send] posts a
// message and returns the same kind of tracker as a one-to-one message.
//
// # Evidence in a room
//
//   - DELIVERED_TO_SERVER: our server acknowledged the stanza (XEP-0198), as
//     for one-to-one messages.
//   - DELIVERED_TO_RECIPIENT: the room reflected the message back to us, which
//     proves that it accepted and distributed it. The reflected message is the
//     tracker's Response, so a caller can see whether the room rewrote the
//     body. A reflection is matched by its XEP-0359 origin-id, then its id,
//     then, for rooms that rewrite both, by our own occupant and the same
//     body, oldest first. Only a reflection from our own occupant counts (our
//     current nick, following a nick change or a nick the room assigned, or
//     our XEP-0421 occupant-id where the room announces them):
//     another occupant reusing our id changes nothing.
//   - SEEN_BY_RECIPIENT: another occupant sent a displayed marker (XEP-0333)
//     for the message or a later one. In rooms that announce XEP-0359, markers
//     reference the room-assigned stanza-id taken from our reflection, and
//     markers that reference our own id are ignored; elsewhere they reference
//     our id. [Room.SeenBy] lists who has seen a message: by occupant-id where
//     the room announces them, else by nick. The list keeps growing as more
//     occupants read, for as long as the room remembers the message (its last
//     256 messages), also after the tracker settled on the first reader.
//   - ERROR: the room refused the message (not an occupant, visitor in a
//     moderated room, forbidden, not-acceptable).
//
// # Decisions
//
// Reflections of tracked messages are consumed: the application's handler
// does not see its own messages echoed, which spares bots from answering
// themselves. Set Config.PassReflections to see them. Markers and everybody
// else's messages always reach the handler.
//
// A room's stanza-ids and occupant-ids are trusted only when the room
// announces urn:xmpp:sid:0 and urn:xmpp:occupant-id:0 in its disco#info; a
// message carrying two stanza-ids from the room is trusted for neither.
//
// Leaving the room, being kicked or banned, or the room being destroyed
// settles the room's pending trackers: those without proof become CLOSED.
// History replayed on (re)join is handled like any other evidence: it can only
// move trackers forward, never duplicate or revive them. After a connection
// that could not be resumed, the room is joined again automatically, and
// also when the room answers one of our messages with an error that means we
// are probably no longer in it although we never saw ourselves leave
// (not-acceptable, item-not-found, remote-server-*: a "ghost" membership
// after a restart of the room's server); Config.OnSuspect tells the
// application. The message itself stays in ERROR and is not re-sent.
package muc // import "github.com/xmpptrack/xmpptrack/muc"

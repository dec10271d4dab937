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
//     body, oldest first; a message without a body (our own displayed marker
//     reflected, our other devices' chat states) is matched by its ids only,
//     and so is a delayed one (XEP-0203): the history a room replays at
//     (re)join may hold an earlier message of ours, or of whoever had our
//     nick, with the same text. In a room that rewrites ids and strips
//     origin-ids, a reflection that reaches us delayed (a server may stamp
//     the stanzas it re-sends after a resumed stream) therefore proves
//     nothing, and its message keeps its state. Only a reflection from our
//     own occupant counts (our current nick, following a nick change or a
//     nick the room assigned at join, or our XEP-0421 occupant-id where the
//     room announces them): another occupant reusing our id changes
//     nothing. A room where we are alone reflects too:
//     DELIVERED_TO_RECIPIENT then means distributed to nobody.
//     [Room.Occupants] tells who else is there.
//   - SEEN_BY_RECIPIENT: another occupant sent a displayed marker (XEP-0333)
//     for the message, or for a later one when the room reflected this one:
//     a marker proves nothing about a message the room may never have
//     distributed, which keeps its state and can still get its own marker.
//     In rooms that announce XEP-0359, markers reference the room-assigned
//     stanza-id taken from our reflection, and markers that reference our
//     own id are ignored; elsewhere they reference our id. [Room.SeenBy]
//     lists who has seen a message: each reader's nick as of its marker, its
//     occupant-id where the room announces them, its real JID where the room
//     reveals it. The list keeps growing as more occupants read, for as long
//     as the room remembers the message (at least its last 256 messages),
//     also after the tracker settled on the first reader. Each message is
//     walked once however many markers cover it: a repeated marker costs
//     O(1).
//   - ERROR: the room refused the message (not an occupant, visitor in a
//     moderated room, forbidden, not-acceptable). Only the room itself (its
//     bare JID) speaks for the room: an error that another occupant sends us
//     (the room forwards it from room@service/nick) moves nothing.
//
// # Decisions
//
// While a Room is joined it owns the client's traffic to the room's bare JID:
// xmpptrack.Client.Send of any message to it (a reply built by
// xmpptrack.Incoming.Reply, say) is Room.SendMessage, and
// xmpptrack.Client.MarkDisplayed of the room or of an occupant is
// Room.MarkDisplayed (queued by the client, never blocking). An occupant's
// private message is not the room's: xmpptrack.Client.MarkConversation of
// it marks that occupant's conversation, with a marker to its occupant JID
// (room@service/nick), until the occupant leaves or changes nick (the
// message is then forgotten, not moved to the new nick: see
// xmpptrack.Client.MarkDisplayed), the room is left, or the room's error
// makes us join it again (see below: we were probably out of the room,
// and a nick may be somebody else's by then). Reflections of
// the messages a Room sent are consumed: neither the client's OnMessage nor
// its Handler sees its own messages echoed, which spares bots from
// answering themselves. Set Config.PassReflections to see
// them. Markers and everybody else's messages always reach the application,
// and so does the history a room replays at join, with its XEP-0203 stamp
// (Incoming.Delay): our own earlier messages included, since they are not
// reflections of anything this Room sent (their nick is ours, see Addr).
//
// A room's stanza-ids and occupant-ids are trusted only when the room
// announces urn:xmpp:sid:0 and urn:xmpp:occupant-id:0 in its disco#info; a
// message carrying two stanza-ids from the room is trusted for neither.
// What a presence says about its occupant is read only where XEP-0045 and
// XEP-0421 put it: the occupant-id among the presence's own children, the
// status codes and the item (role, real JID, new nick) among the children
// of the room's muc#user <x/>. Rooms relay an occupant's own extension
// elements as they came, so a status code nested deeper is the occupant's
// word, not the room's, and never makes its presence ours; a presence
// carrying two muc#user <x/> gives neither's status codes nor item. Our
// own presence is the one from our current nick; a status 110 from another
// nick is believed only in the room's answer to a join of ours (a nick the
// room assigned or modified, status 210). Once we are in, our nick changes
// only by a nick change (status 303, the new nick in its item) announced
// from our current nick, and a 110 from another nick is another occupant's
// presence. A message's ids and body are likewise read among its own
// children only.
//
// Leaving the room, being kicked or banned, or the room being destroyed
// settles the room's pending trackers: those without proof become CLOSED.
// History replayed on (re)join is handled like any other evidence, except
// that its body proves nothing (only our message's own ids do): it can only
// move trackers forward, never duplicate or revive them; it reaches the
// application as anybody's messages do, with its XEP-0203 delay. After a
// connection that could not be resumed, the room is joined again
// automatically, and also when the room itself answers one of our messages
// with an error that means we are probably no longer in it although we never
// saw ourselves leave (not-acceptable, item-not-found, remote-server-*: a
// "ghost" membership after a restart of the room's server); Config.OnSuspect
// tells the application. The message itself stays in ERROR and is not
// re-sent. Rejoins are paced whatever asks for them: the first runs at once,
// each further one waits twice as long as the one before, from 2 seconds up
// to 5 minutes, and the pace starts over after 5 quiet minutes. A failed
// rejoin is tried again at that pace, and so is one refused for a nick
// conflict (our own ghost may hold the nick for a while); one the room
// refuses otherwise (a ban, a members-only room) ends the room as a kick
// does. [Room.Leave] stops a
// rejoin and waits for it: once Leave returned, the room is never joined
// again.
//
// Joining, leaving and disco#info requests are written by this package
// through the client's connection without ever handing mellium a context
// that another goroutine's write could suffer from; their answers are read
// by the room's observer.
package muc // import "github.com/xmpptrack/xmpptrack/muc"

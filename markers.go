package xmpptrack

import (
	"strings"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// Displayed markers on the application's request: which conversation a
// markable message belongs to, and how the application names it.

// senderKind tells under which conversation a markable message is
// remembered (see Client.senderOf).
type senderKind uint8

const (
	// senderAccount: any device of an account, one conversation under the
	// bare JID.
	senderAccount senderKind = iota
	// senderOccupant: a room occupant writing in private, as its XEP-0045
	// muc#user <x/> says; a conversation with its full JID.
	senderOccupant
	// senderRoomOccupant: an occupant of a room that an observer took over
	// (package muc joined it); a conversation with its full JID for as long
	// as the room is ours.
	senderRoomOccupant
)

// senderOf tells who sent ev, a message that is not a group chat message:
// an occupant of a room an observer takes over, when ev.From is a full JID
// whose bare JID is that room; an occupant by its own word, when ev.From is
// a full JID and ev carries XEP-0045's muc#user <x/>; else an account. It
// runs on the Serve goroutine, so that it sees the rooms as they are when
// the message arrives.
//
// The <x/> is the sender's word, and taking it costs nobody else anything:
// the message is remembered under the sender's own full JID (an address its
// server vouches for), where no other sender's message is, and its marker
// goes back to that address. A contact that adds it only has its own
// messages marked per resource.
func (c *Client) senderOf(ev *stanza.Evidence) senderKind {
	switch {
	case ev.Type == xstanza.GroupChatMessage || ev.From.Resourcepart() == "":
		return senderAccount
	case c.roomOf(ev.From.Bare()) != nil:
		return senderRoomOccupant
	case ev.MUCUser:
		return senderOccupant
	}
	return senderAccount
}

// MarkDisplayed sends an XEP-0333 displayed marker for the newest markable
// message received from peer, which tells the sender that it and every
// earlier message were displayed. A marker for peer that is still waiting
// to be written is replaced by the new one. It reports whether a marker was
// queued: false when there is nothing new to mark, when Config.NoMarkers is
// set, after Close, or when the outbox is full (then the message stays the
// one to mark, and a later call may send the marker). It never blocks.
//
// With Config.OnMessage set, the newest markable message is the newest one
// OnMessage has been called with: a callback that marks its message marks
// that one, never one the reader has read ahead of the application.
//
// A person's messages are one conversation whatever the device: peer may
// be the bare JID or any full JID of the account, and the marker goes to the
// bare JID. A room occupant writing in private (a message that is not a
// group chat message from room@service/nick, of a room joined with package
// muc or carrying XEP-0045's muc#user <x/>) is a conversation of its own:
// MarkDisplayed of room@service/nick marks it, with a marker to that
// occupant JID (never to the room, and never for another occupant's
// message), except while the room is joined with package muc.
//
// For a room joined with package muc, peer may be the room or any of its
// occupants (Incoming.From of a group chat message): the marker goes to the
// room, for the newest message another occupant sent there (see
// muc.Room.MarkDisplayed), which may be newer than the one OnMessage is
// running with: the room's marker is cumulative and its reader does not wait
// for the application. Group chat messages of rooms not joined through
// package muc are never marked. An occupant's private message in a joined
// room is marked with MarkConversation, which tells it from a group chat
// message by its type.
func (c *Client) MarkDisplayed(peer jid.JID) bool { return c.mark(peer.Bare(), peer) }

// MarkConversation is MarkDisplayed for the conversation that m belongs
// to, told by m's type as well as its sender, since group chat messages and
// an occupant's private messages share an address (room@service/nick):
//   - a group chat message: its room (m.Room), only while a room joined
//     with package muc takes it over (muc.Room.MarkDisplayed calls this);
//     never anything else, so once the room is left nothing is queued;
//   - any other message: its sender's conversation (m.From), as
//     MarkDisplayed marks it, but never the room's: a private message from
//     an occupant is marked with a marker to m.From, of the message's type
//     (chat).
//
// Private messages from the occupants of a room joined with package muc
// are not marked once the room is left (Leave, a kick): the room refuses
// a non-occupant's private messages (XEP-0045 §7.5). One that arrives after
// that is taken by its muc#user <x/> alone, as in a room not joined with
// package muc.
//
// Only m's Type, From and Room are read, so an application that reads
// messages with Config.Handler may pass an Incoming with just those. It
// reports what MarkDisplayed reports, and false for a nil m.
func (c *Client) MarkConversation(m *Incoming) bool {
	switch {
	case m == nil:
		return false
	case m.Type == xstanza.GroupChatMessage:
		return c.mark(m.Room, jid.JID{})
	default:
		return c.mark(jid.JID{}, m.From)
	}
}

// mark queues a displayed marker: to room (a bare JID, the zero JID for
// none) as a group chat message when an observer takes it over, else for
// the newest markable message remembered for the conversation with from
// (the zero JID for none): under from itself, where an occupant's private
// messages are, then, unless from's bare JID is a room an observer takes
// over, under its bare JID, where an account's are. The observers are
// looked up under the recipient's lock, so a room being removed is either
// marked as the room or not at all.
func (c *Client) mark(room, from jid.JID) bool {
	if c.cfg.NoMarkers || c.ctx.Err() != nil {
		return false
	}
	r := c.rcp
	r.mu.Lock()
	defer r.mu.Unlock()
	if room.Domainpart() != "" {
		if o := c.roomOf(room); o != nil && o.Mark != nil {
			key := room.String()
			if _, queued := r.markerAt[key]; !queued && len(r.out) >= outboxSize {
				// Full: leave the room's newest message to mark for later.
				r.c.log.Debug("xmpptrack: outbox full, room marker not queued", "to", key)
				return false
			}
			id := o.Mark()
			return id != "" && r.queueLocked(key, answer{to: room, typ: xstanza.GroupChatMessage, ref: id, marker: true})
		}
	}
	if from.Domainpart() == "" {
		return false
	}
	key := from.String()
	a, ok := r.markable[key]
	if !ok && from.Resourcepart() != "" && c.roomOf(from.Bare()) == nil {
		key = from.Bare().String()
		a, ok = r.markable[key]
	}
	if !ok || !r.queueLocked(key, a) {
		return false
	}
	delete(r.markable, key)
	return true
}

// forgetRoom drops the markable messages remembered for room (a bare JID)
// and for its occupants: once we are no longer in the room, the room
// refuses our private messages to its occupants, and its bare JID is no
// longer a room of ours.
func (r *recipient) forgetRoom(room string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.markable, room)
	prefix := room + "/"
	for k := range r.markable {
		if strings.HasPrefix(k, prefix) {
			delete(r.markable, k)
		}
	}
}

package xmpptrack

import (
	"encoding/xml"
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
// goes back to that address. A contact that adds it has its bare JID taken
// for a room's: its own messages are then marked per resource, and nothing
// under its bare JID.
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
// muc, or carrying XEP-0045's muc#user <x/>, or from a room known by an
// earlier such message or an earlier join) is a conversation of its own:
// MarkDisplayed of room@service/nick marks it, with a marker to that
// occupant JID, never to the room's bare JID and never for another
// occupant's message, except while the room is joined with package muc.
// Only a message from a room that nothing made known (not joined, no <x/>
// seen: rooms such as Prosody's and ejabberd's add it) is taken for a
// person's. At most 1,024 rooms are known at once, whatever senders claim
// with the <x/>: past that, an arbitrary one is forgotten (a joined room
// stays known by its join) and taken for a person's again until an
// occupant's <x/> says otherwise (with a room that does not add the <x/>, a
// flood of forged ones can so bring back a marker to its bare JID). An
// occupant's message is forgotten when the occupant leaves or changes
// nick, when we leave the room, when package muc joins it again after the
// room's error said we were probably out of it, and on a new stream that
// was not resumed (each nick may be somebody else's by then), including
// one read before that but still waiting for Config.OnMessage. A nick change
// (XEP-0045 §7.6: an unavailable presence with status 303) is not followed:
// the message is not moved to the new nick, and its marker is not sent.
// Moved, it would still be out of reach of MarkConversation of the message,
// whose From names the old nick (which somebody else may take next), and
// following it would mean reading every such presence's children on the
// reading goroutine; the occupant's next private message is remembered
// under the new nick.
//
// In Config.OnMessage, MarkConversation(m) marks the conversation of m
// whatever it is.
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
// that is its occupant's conversation, as in a room not joined with package
// muc: the room stays known as one, and its bare JID never gets a marker.
//
// Only m's Type, From and Room are read (Room, when zero, is From's bare
// JID), so an application that reads messages with Config.Handler may pass
// an Incoming with just those. It reports what MarkDisplayed reports, and
// false for a nil m.
func (c *Client) MarkConversation(m *Incoming) bool {
	switch {
	case m == nil:
		return false
	case m.Type == xstanza.GroupChatMessage:
		room := m.Room
		if room.Domainpart() == "" {
			room = m.From.Bare()
		}
		return c.mark(room, jid.JID{})
	default:
		return c.mark(jid.JID{}, m.From)
	}
}

// mark queues a displayed marker: to room (a bare JID, the zero JID for
// none) as a group chat message when an observer takes it over, else for
// the newest markable message remembered for the conversation with from
// (the zero JID for none): from's own, an occupant's, when from is a full
// JID, else its account's (under its bare JID) unless that bare JID is a
// room, known as one or taken over by an observer. The observers are
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
	bare := from.Bare()
	account := bare.String()
	if from.Resourcepart() != "" {
		full := from.String()
		if a, ok := r.marks.occupants[account][full]; ok {
			if !r.queueLocked(full, a) {
				return false
			}
			r.marks.dropOccupant(account, full)
			return true
		}
	}
	if r.marks.isRoom(account) || c.roomOf(bare) != nil {
		return false // never an occupant's conversation as a room's, nor a room's own
	}
	a, ok := r.marks.accounts[account]
	if !ok || !r.queueLocked(account, a) {
		return false
	}
	delete(r.marks.accounts, account)
	return true
}

// forgetRoom drops the markable messages of room's occupants (room is a
// bare JID) once we are no longer in the room: the room refuses our
// private messages to its occupants. The room stays known as a room.
func (r *recipient) forgetRoom(room string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marks.learnRoom(room)
	r.marks.forgetOccupants(room)
	// And those still waiting for OnMessage: we may be back in the room
	// by the time their callbacks run, the nicks somebody else's.
	prefix := room + "/"
	for full := range r.pending {
		if strings.HasPrefix(full, prefix) {
			r.goneLocked(full)
		}
	}
}

// forgetOccupant drops the markable message of occupant (room@service/nick)
// once it left the room or changed nick: the nick may be somebody else's
// next, and our marker, with the message's id and thread, theirs.
func (r *recipient) forgetOccupant(occupant jid.JID) {
	room := occupant.Bare().String()
	r.mu.Lock()
	defer r.mu.Unlock()
	full := occupant.String()
	r.goneLocked(full)
	if r.marks.occupants[room] != nil {
		r.marks.dropOccupant(room, full)
	}
}

// forgetOccupants drops every occupant's markable message, on a stream
// that was not resumed: we were out of every room for a while, and each
// nick may be somebody else's now.
func (r *recipient) forgetOccupants() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.allGoneLocked()
	r.marks.forgetOccupants("")
}

// occupantGone forgets the markable private message of the sender of
// start, a presence, when it is an unavailable one from a full JID: an
// occupant that left its room or changed nick (see forgetOccupant). Only
// such presences cost a parse.
func (r *recipient) occupantGone(start *xml.StartElement) {
	var from string
	unavailable := false
	for _, a := range start.Attr {
		switch {
		case a.Name.Space != "":
		case a.Name.Local == "type":
			unavailable = a.Value == string(xstanza.UnavailablePresence)
		case a.Name.Local == "from":
			from = a.Value
		}
	}
	if !unavailable || from == "" {
		return
	}
	if j, err := jid.Parse(from); err == nil && j.Resourcepart() != "" {
		r.forgetOccupant(j)
	}
}

package xmpptrack

import (
	"encoding/xml"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// Private messages to a room's occupants (room@service/nick) carry
// XEP-0045's muc#user <x/>, which §7.5 asks of a private message sent
// through a room: it tells the occupant's client, and our own server (whose
// XEP-0280 carbons leave such messages out, since our other devices cannot
// answer in the room), that it is a private message of the room.

// mucUserStart is the muc#user <x/>'s start element.
var mucUserStart = xml.StartElement{Name: xml.Name{Space: stanza.NSMUCUser, Local: "x"}}

// mucUser returns the muc#user <x/>, empty.
func mucUser() xml.TokenReader { return xmlstream.Wrap(nil, mucUserStart) }

// toOccupant reports whether a message of type typ to to is a private
// message to an occupant of a room joined with package muc: to is a full
// JID whose bare JID is the room, and the message is not a group chat one.
func (c *Client) toOccupant(to jid.JID, typ xstanza.MessageType) bool {
	return typ != xstanza.GroupChatMessage && to.Resourcepart() != "" && c.roomOf(to.Bare()) != nil
}

// addsMUCUser reports whether Send adds the muc#user <x/> to m, which h
// holds if it is a retry of a message in doubt (see durable.claim). A
// retry is recognised by the bytes of the stanza written ahead, so it gets
// the <x/> exactly when the first call added it, whatever the room did
// since (joined, left, or its observer removed): deciding from the room
// now would make the retry another stanza under the id (ErrDuplicateID),
// while the client sends the first one itself. Any other message gets it
// when it is to an occupant (see toOccupant).
func (c *Client) addsMUCUser(m Message, h *hold) bool {
	if h.e == nil {
		return c.toOccupant(m.To, m.Type)
	}
	c.dur.mu.Lock()
	defer c.dur.mu.Unlock()
	return h.e.mucUser
}

// withMUCUser returns payload with the muc#user <x/> added at its end,
// unless it has one already (at its top level); payload may be nil.
func withMUCUser(payload *tokbuf.Buffer) *tokbuf.Buffer {
	if payload == nil {
		payload = new(tokbuf.Buffer)
	}
	depth := 0
	for _, tok := range payload.Tokens() {
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 && t.Name == mucUserStart.Name {
				return payload
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	payload.Add(mucUserStart)
	payload.Add(mucUserStart.End())
	return payload
}

package muc

import (
	"encoding/xml"
	"errors"

	mmuc "mellium.im/xmpp/muc"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/registry"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// message sees every incoming message (on the client's reading goroutine;
// never blocks, never sends). It reports whether to consume the message.
func (r *Room) message(ev *stanza.Evidence) bool {
	if ev.From.Bare().String() != r.room {
		return false
	}
	if ev.Type == xstanza.ErrorMessage {
		r.errorReply(ev) // the client's registry moves the tracker to Error
		return false
	}
	if ev.Type != xstanza.GroupChatMessage {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ours(ev) {
		return r.reflected(ev)
	}
	switch ev.Marker.Type {
	case stanza.MarkerDisplayed, stanza.MarkerAcknowledged:
		r.marked(ev)
	default:
		if ev.Body != "" {
			r.newest = ev.ID
			if sid := r.roomStanzaID(ev); sid != "" || r.sid {
				r.newest = sid // rooms with XEP-0359: markers name the room's id
			}
		}
	}
	return false
}

// ours reports whether the message comes from our own occupant. The caller
// holds r.mu.
func (r *Room) ours(ev *stanza.Evidence) bool {
	if r.occ && r.ourOcc != "" && ev.OccupantID != "" {
		return ev.OccupantID == r.ourOcc
	}
	return ev.From.Resourcepart() == r.nick
}

// reflected handles our own message coming back from the room. The caller
// holds r.mu.
func (r *Room) reflected(ev *stanza.Evidence) bool {
	e := r.match(ev)
	if e == nil {
		return false // sent by another of our devices, or already matched
	}
	e.reflected = true
	if sid := r.roomStanzaID(ev); sid != "" {
		e.sid = sid
		r.bySID[sid] = e
	}
	resp := &tracking.Response{From: ev.From, ID: ev.ID, Body: ev.Body, StanzaID: e.sid}
	if r.occ {
		resp.OccupantID = ev.OccupantID
	}
	if e.t == nil {
		e.early = resp // Send has not returned the tracker yet
	} else {
		registry.Advance(e.t, tracking.DeliveredToRecipient, resp)
	}
	r.trim()
	return !r.cfg.PassReflections
}

// match finds the unreflected message a reflection belongs to: by origin-id,
// then id, then the same body, oldest first (for rooms that rewrite ids and
// strip origin-ids). The caller holds r.mu.
func (r *Room) match(ev *stanza.Evidence) *entry {
	for _, id := range [2]string{ev.OriginID, ev.ID} {
		if e := r.byID[id]; id != "" && e != nil && !e.reflected {
			return e
		}
	}
	if ev.OriginID != "" {
		// An origin-id we do not know (another of our devices under our
		// nick) or one already matched: the room kept origin-ids, so a
		// rewritten id is no reason to fall back to the body.
		return nil
	}
	for _, e := range r.entries {
		if !e.reflected && e.body == ev.Body && r.byID[ev.ID] == nil {
			return e
		}
	}
	return nil
}

// roomStanzaID returns the stanza-id the room assigned, when the room is
// trusted to assign them and assigned exactly one. The caller holds r.mu.
func (r *Room) roomStanzaID(ev *stanza.Evidence) string {
	if !r.sid {
		return ""
	}
	id := ""
	for _, s := range ev.StanzaIDs {
		if s.By == r.room {
			if id != "" {
				return "" // two from the room: trust neither (XEP-0359 §3 rule 4)
			}
			id = s.ID
		}
	}
	return id
}

// marked applies another occupant's displayed marker: our message it names,
// and every earlier one, become SeenByRecipient. The caller holds r.mu.
func (r *Room) marked(ev *stanza.Evidence) {
	var e *entry
	if r.sid {
		e = r.bySID[ev.Marker.ID] // markers must name the room's id
	} else {
		e = r.byID[ev.Marker.ID]
	}
	if e == nil {
		return
	}
	reader := ev.From.Resourcepart()
	if r.occ && ev.OccupantID != "" {
		reader = ev.OccupantID
	}
	if upTo, ok := r.readers[reader]; ok || len(r.readers) < maxReaders {
		r.readers[reader] = max(upTo, e.seq+1)
	}
	resp := &tracking.Response{From: ev.From, ID: ev.ID}
	if r.occ {
		resp.OccupantID = ev.OccupantID
	}
	for _, o := range r.entries {
		if o.seq > e.seq {
			break
		}
		if o.t != nil {
			registry.Advance(o.t, tracking.SeenByRecipient, resp)
		}
	}
	r.trim()
}

// maxPresenceTokens bounds what presence reads of one presence, after its
// start element.
const maxPresenceTokens = 1024

// presence sees every incoming presence: mellium's room client completes
// joins and leaves from it, and our own presences tell our occupant-id and
// whether we were removed.
func (r *Room) presence(p xstanza.Presence, rd xml.TokenReader) {
	if p.From.Bare().String() != r.room {
		return
	}
	// mellium's handler decodes the whole presence, start element first.
	var b tokbuf.Buffer
	b.Add(p.StartElement())
	b.ReadFrom(rd, 1+maxPresenceTokens) // a read error ends the presence early, as io.EOF would
	self := scanSelf(b.Tokens())
	unavailable := p.Type == xstanza.UnavailablePresence
	r.mu.Lock()
	ours := p.From.Resourcepart() == r.nick || self.status110
	if ours && self.occupantID != "" {
		r.ourOcc = self.occupantID
	}
	switch {
	case ours && unavailable && self.status303:
		// A nick change (XEP-0045 §7.6): we stay; our presence from the new
		// nick follows.
		if self.newNick != "" {
			r.nick = self.newNick
		}
	case ours && !unavailable && self.status110:
		r.nick = p.From.Resourcepart() // also a nick the room assigned (status 210)
	}
	left := ours && unavailable && !self.status303
	r.mu.Unlock()
	if left {
		defer r.settle() // left, kicked, banned, or the room was destroyed
	}
	r.mc.HandlePresence(p, readEncoder{&b})
}

// self is what our own presence says about us.
type self struct {
	occupantID string
	status110  bool
	status303  bool   // a nick change
	newNick    string // the item's nick, with status303
}

// scanSelf reads the occupant-id and the self-presence status from a presence's tokens.
func scanSelf(toks []xml.Token) (s self) {
	for _, t := range toks {
		start, ok := t.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case start.Name.Space == stanza.NSOccupantID && start.Name.Local == "occupant-id":
			s.occupantID = attr(start, "id")
		case start.Name.Space == mmuc.NSUser && start.Name.Local == "status":
			s.status110 = s.status110 || attr(start, "code") == "110"
			s.status303 = s.status303 || attr(start, "code") == "303"
		case start.Name.Space == mmuc.NSUser && start.Name.Local == "item":
			s.newNick = attr(start, "nick")
		}
	}
	return s
}

func attr(start xml.StartElement, name string) string {
	for _, a := range start.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// readEncoder gives mellium's presence handler a reader; it never writes.
type readEncoder struct{ xml.TokenReader }

func (readEncoder) EncodeToken(xml.Token) error               { return errReadOnly }
func (readEncoder) EncodeElement(any, xml.StartElement) error { return errReadOnly }
func (readEncoder) Encode(any) error                          { return errReadOnly }

var errReadOnly = errors.New("muc: presence handler may not write")

// errorReply rejoins the room when it answers one of our messages with an
// error that says we may no longer be an occupant (protocol-brief.md §10 row
// 36; Conversations and Monal check membership the same way).
func (r *Room) errorReply(ev *stanza.Evidence) {
	switch ev.Error.Condition {
	case xstanza.NotAcceptable, xstanza.ItemNotFound, xstanza.RemoteServerNotFound, xstanza.RemoteServerTimeout:
	default:
		return
	}
	r.mu.Lock()
	_, ours := r.byID[ev.ID]
	if ours && !r.left && !r.rejoining {
		r.log.Debug("muc: membership suspect; joining again", "room", r.room, "condition", ev.Error.Condition)
		r.rejoinLocked()
		if f := r.cfg.OnSuspect; f != nil {
			go f(stanza.Classify(*ev.Error))
		}
	}
	r.mu.Unlock()
}

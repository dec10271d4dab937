package muc

import (
	"encoding/xml"

	"mellium.im/xmpp/jid"
	mmuc "mellium.im/xmpp/muc"
	xstanza "mellium.im/xmpp/stanza"

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
		// Only the room itself can say we are not an occupant: an
		// occupant's error (room@service/nick) is anybody's word.
		if ev.From.Resourcepart() == "" {
			r.errorReply(ev)
		}
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
	r.unbody(e)
	if e.seq < r.seenUpTo {
		// Proven after a marker covered it: the next marker lifts it.
		if len(r.late) == keepSettled {
			r.late = append(r.late[:0], r.late[1:]...) // bounded: the oldest waits no more
		}
		r.late = append(r.late, e)
	}
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
		advance(e.t, tracking.DeliveredToRecipient, resp)
	}
	r.trim()
	return !r.cfg.PassReflections
}

// match finds the unreflected message a reflection belongs to: by origin-id,
// then id, then the same body, oldest first (for rooms that rewrite ids and
// strip origin-ids). A message without a body is matched by its ids only:
// bodyless messages from our nick (the reflection of our own displayed
// marker, our other devices' chat states) are not the reflection of a
// payload-only message of ours. Nor is a delayed one (XEP-0203) matched by
// its body: the history a room replays at (re)join is what the room had
// before, possibly long before we sent the message, and the same text then
// proves nothing (Evidence carries no stamp to compare, and the room's
// clock is not ours). Ids stay: a delayed copy with our message's own id is
// that message. The caller holds r.mu.
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
	if r.byID[ev.ID] != nil {
		return nil // our id, already matched: a copy, not a rewrite
	}
	if ev.Body == "" || ev.HasDelay {
		return nil // nothing to match by, or history
	}
	if q := r.byBody[ev.Body]; len(q) > 0 {
		return q[0]
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

// marked applies another occupant's displayed marker. The message it names
// becomes SeenByRecipient, and so does every earlier one of ours that the
// room reflected: a marker proves nothing about a message the room may
// never have distributed (one that ended in Error, or is still unproven),
// which keeps its state and can still get its own marker, or, once the
// room reflects it, the next marker for a later message. Each message is
// walked once, however many markers cover it: a repeated or older marker
// costs O(1). The caller holds r.mu.
func (r *Room) marked(ev *stanza.Evidence) {
	var e *entry
	if r.sid {
		e = r.bySID[ev.Marker.ID] // markers must name the room's id
	} else {
		e = r.byID[ev.Marker.ID]
	}
	if e == nil || e.failed {
		return
	}
	nick := ev.From.Resourcepart()
	who := Occupant{Nick: nick}
	if o := r.occupants[nick]; o != nil {
		who.JID, who.OccupantID = o.JID, o.OccupantID
	}
	key := "\x00" + nick // cannot collide with an occupant-id, which has no NUL
	if r.occ && ev.OccupantID != "" {
		key, who.OccupantID = ev.OccupantID, ev.OccupantID
	}
	if rd, ok := r.readers[key]; ok || len(r.readers) < maxReaders {
		rd.upTo = max(rd.upTo, e.seq+1)
		rd.who = who
		r.readers[key] = rd
	}
	resp := &tracking.Response{From: ev.From, ID: ev.ID}
	if r.occ {
		resp.OccupantID = ev.OccupantID
	}
	r.seen(e, resp)
	first := r.next - uint64(len(r.entries))
	for seq := max(r.seenUpTo, first); seq < e.seq; seq++ {
		if o := r.at(seq); o.reflected {
			r.seen(o, resp)
		}
	}
	r.seenUpTo = max(r.seenUpTo, e.seq+1)
	kept := r.late[:0]
	for _, o := range r.late {
		if o.seq < e.seq {
			r.seen(o, resp)
		} else {
			kept = append(kept, o)
		}
	}
	clear(r.late[len(kept):])
	r.late = kept
	r.trim()
}

// seen moves one message to SeenByRecipient. The caller holds r.mu.
func (r *Room) seen(e *entry, resp *tracking.Response) {
	switch {
	case e.failed:
	case e.t == nil:
		if e.earlySeen == nil {
			e.earlySeen = resp // Send has not returned the tracker yet
		}
	case !e.t.Settled() && e.t.State() != tracking.SeenByRecipient:
		advance(e.t, tracking.SeenByRecipient, resp)
	}
}

// maxPresenceTokens bounds what presence reads of one presence.
const maxPresenceTokens = 1024

// presence sees every incoming presence from the room: answers to our join
// presence, who is in the room, and our own presences, which tell our nick,
// our occupant-id and whether we were removed.
func (r *Room) presence(p xstanza.Presence, rd xml.TokenReader) {
	if p.From.Bare().String() != r.room {
		return
	}
	var b tokbuf.Buffer
	b.ReadFrom(rd, maxPresenceTokens) // a read error ends the presence early, as io.EOF would
	nick := p.From.Resourcepart()
	if p.Type == xstanza.ErrorPresence {
		r.mu.Lock()
		if r.joinWait != nil && (nick == "" || nick == r.nick) {
			r.joinWait <- stanzaError(b.Tokens()) // the room refused our join
			r.joinWait = nil
		}
		r.mu.Unlock()
		return
	}
	info := scanPresence(b.Tokens())
	unavailable := p.Type == xstanza.UnavailablePresence
	r.mu.Lock()
	// Ours: the presence from our nick. A status 110 from another nick is
	// believed only in the answer to a join of ours (a nick the room
	// assigned or modified, status 210); once we are in, our nick changes
	// only by a 303 from our current nick (below), and a 110 from another
	// nick would be an occupant's own <x/> that the room relayed.
	ours := nick == r.nick || info.status110 && !unavailable && r.joinWait != nil
	switch {
	case nick == "":
		// From the room itself (ejabberd announces a new room so): nobody.
	case !ours:
		r.occupant(nick, unavailable, info)
	case unavailable && info.status303:
		// A nick change (XEP-0045 §7.6): we stay; our presence from the new
		// nick follows.
		if info.newNick != "" {
			r.nick = info.newNick
		}
	case !unavailable:
		r.nick = nick // also a nick the room assigned at join (status 210)
		if info.occupantID != "" {
			r.ourOcc = info.occupantID
		}
		r.in = true
		if r.joinWait != nil {
			r.joinWait <- nil // we are in; everybody else's presence came first
			r.joinWait = nil
		}
	}
	// Before our presence came back, an unavailable one is stale: the
	// answer to an earlier Leave of this client's in the same room.
	left := ours && unavailable && !info.status303 && r.in
	r.mu.Unlock()
	if left {
		r.settle() // left, kicked, banned, or the room was destroyed
	}
}

// occupant records another occupant's presence. The caller holds r.mu.
func (r *Room) occupant(nick string, unavailable bool, info presenceInfo) {
	o := r.occupants[nick]
	switch {
	case unavailable && info.status303 && o != nil && info.newNick != "":
		delete(r.occupants, nick)
		o.Nick = info.newNick
		r.occupants[o.Nick] = o
	case unavailable:
		delete(r.occupants, nick)
	case o != nil || len(r.occupants) < maxOccupants:
		if o == nil {
			o = &Occupant{Nick: nick}
			r.occupants[nick] = o
		}
		o.OccupantID, o.Role = info.occupantID, info.role
		o.JID = jid.JID{}
		if info.jid != "" {
			if j, err := jid.Parse(info.jid); err == nil {
				o.JID = j
			}
		}
	}
}

// presenceInfo is what a room presence says about its occupant.
type presenceInfo struct {
	occupantID string
	status110  bool   // the presence is ours
	status303  bool   // a nick change
	newNick    string // the item's nick, with status303
	jid, role  string // the item's real JID (when revealed) and role
}

// scanPresence reads a presence's occupant-id, item and status codes where
// XEP-0421 and XEP-0045 put them, toks being the presence's children: the
// occupant-id among the presence's own children, the item and the status
// codes among the children of its muc#user <x/>, which the room writes
// (rooms strip the <x/> an occupant puts there). Anything nested deeper is
// the occupant's own extension content, relayed as it came: an occupant
// could nest a status 110 there and pass for us. A presence with two
// muc#user <x/> gives no item and no status codes: which one is the
// room's cannot be told. The first occupant-id and the first item count,
// as the first of a message's ids do.
func scanPresence(toks []xml.Token) (s presenceInfo) {
	var x presenceInfo // what the muc#user <x/> says
	depth := 0         // of the next token: 0 for the presence's children
	xs := 0            // muc#user <x/> among the presence's children
	inX := false       // within one of them
	haveItem := false
	for _, t := range toks {
		switch t := t.(type) {
		case xml.StartElement:
			switch {
			case depth == 0 && t.Name.Space == stanza.NSOccupantID && t.Name.Local == "occupant-id":
				if s.occupantID == "" {
					s.occupantID = attr(t, "id")
				}
			case depth == 0 && t.Name.Space == mmuc.NSUser && t.Name.Local == "x":
				xs++
				inX = true
			case depth == 1 && inX && t.Name.Space == mmuc.NSUser && t.Name.Local == "status":
				x.status110 = x.status110 || attr(t, "code") == "110"
				x.status303 = x.status303 || attr(t, "code") == "303"
			case depth == 1 && inX && t.Name.Space == mmuc.NSUser && t.Name.Local == "item" && !haveItem:
				haveItem = true
				x.newNick, x.jid, x.role = attr(t, "nick"), attr(t, "jid"), attr(t, "role")
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				inX = false
			}
		}
	}
	if xs == 1 {
		x.occupantID = s.occupantID
		s = x
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

// errorReply rejoins the room when the room itself answers one of our
// messages with an error that says we may no longer be an occupant
// (Conversations and Monal check membership the same way). The rejoin is
// paced (see rejoinMin), so that even the room cannot make us rejoin in a
// loop.
func (r *Room) errorReply(ev *stanza.Evidence) {
	switch ev.Error.Condition {
	case xstanza.NotAcceptable, xstanza.ItemNotFound, xstanza.RemoteServerNotFound, xstanza.RemoteServerTimeout:
	default:
		return
	}
	r.mu.Lock()
	_, ours := r.byID[ev.ID]
	suspect := ours && !r.left && !r.leaving && !r.rejoining
	if suspect {
		r.log.Debug("muc: membership suspect; joining again", "room", r.room, "condition", ev.Error.Condition)
		r.rejoinLocked()
		if f := r.cfg.OnSuspect; f != nil {
			go f(stanza.Classify(*ev.Error))
		}
	}
	r.mu.Unlock()
	if suspect {
		// Outside r.mu: the client's lock comes first (see takeNewest).
		// Still on the reading goroutine, so before the rejoin's answers.
		r.forgetPrivate()
	}
}

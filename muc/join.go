package muc

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/stanza"
)

// Every write here goes through internal/wire: mellium is never handed a
// context that could be cancelled while other goroutines write on the same
// connection. So the join and leave presences, and the disco#info requests,
// are written by this package, and their answers are caught by its
// observer (presence and IQ), not by mellium's muc client or SendIQ.

// Rejoin pacing: the first rejoin runs at once, each further one waits
// twice as long as the one before (from rejoinMin up to rejoinMax); after a
// quiet rejoinMax the wait starts again from rejoinMin.
const (
	rejoinMin     = 2 * time.Second
	rejoinMax     = 5 * time.Minute
	rejoinTimeout = time.Minute // one join attempt
)

// identity is a disco#info identity.
type identity struct{ Category, Type string }

// iqAnswer is a disco#info answer.
type iqAnswer struct {
	identities []identity
	features   []string
	err        error
}

// IsRoom reports whether addr belongs to a group chat service: it asks
// the service (addr's domain) for its disco#info identity, which is
// "conference" for a XEP-0045 service. A service that does not answer
// gives false and the error; one that answers with other identities (a
// user's server, "server"/"im") gives false and nil.
func IsRoom(ctx context.Context, c *xmpptrack.Client, addr jid.JID) (bool, error) {
	ok, _, err := isRoom(ctx, c, addr)
	return ok, err
}

// isRoom is IsRoom, with what the service said it is.
func isRoom(ctx context.Context, c *xmpptrack.Client, addr jid.JID) (bool, string, error) {
	s, err := c.Session(ctx)
	if err != nil {
		return false, "", err
	}
	a, err := discoInfo(ctx, c, s, addr.Domain())
	if err != nil {
		return false, "", err
	}
	for _, id := range a.identities {
		if id.Category == "conference" {
			return true, "", nil
		}
	}
	what := "a service with no identity"
	if len(a.identities) > 0 {
		what = "a " + a.identities[0].Category + "/" + a.identities[0].Type + " service"
	}
	return false, what, nil
}

// checkService asks the room's service for its identity: a service that
// answers without a conference identity is not a group chat service.
func (r *Room) checkService(ctx context.Context) error {
	ok, what, err := isRoom(ctx, r.c, r.roomJID)
	switch {
	case err != nil && ctx.Err() != nil:
		return err
	case err != nil:
		r.log.Debug("muc: no disco#info from the service", "service", r.roomJID.Domain(), "err", err)
		return nil // some services hide: let the join decide
	case !ok:
		return fmt.Errorf("%w: %s is %s", ErrNotARoom, r.roomJID.Domain(), what)
	}
	return nil
}

// join sends the join presence, waits for our own presence from the room
// (which comes after everybody else's: Occupants is then complete), and
// reads the room's features.
func (r *Room) join(ctx context.Context) error {
	s, err := r.c.Session(ctx)
	if err != nil {
		return err
	}
	answer := make(chan error, 1)
	r.mu.Lock()
	if r.left {
		r.mu.Unlock()
		return ErrNotJoined
	}
	to := r.addrLocked()
	r.joinWait = answer
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.joinWait == answer {
			r.joinWait = nil
		}
		r.mu.Unlock()
	}()
	p := xstanza.Presence{To: to, ID: xmpptrack.NewID()}
	x := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: NS, Local: "x"}})
	if _, err := wire.Write(ctx, s, p.Wrap(x)); err != nil {
		return err
	}
	select {
	case err := <-answer:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	// We are in. Without an answer the room's ids stay untrusted.
	a, err := discoInfo(ctx, r.c, s, r.roomJID)
	if err != nil {
		r.log.Debug("muc: no disco#info from the room; stanza-ids and occupant-ids untrusted", "room", r.room, "err", err)
	}
	r.mu.Lock()
	r.sid, r.occ = false, false
	for _, f := range a.features {
		switch f {
		case stanza.NSSID:
			r.sid = true
		case stanza.NSOccupantID:
			r.occ = true
		}
	}
	r.mu.Unlock()
	return nil
}

// leave sends the leave presence. It does not wait for the room's answer,
// which the reading goroutine delivers: Leave may be called from the
// client's callbacks, while the reader waits for them.
func (r *Room) leave(ctx context.Context, status string) error {
	s, err := r.c.Session(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	to := r.addrLocked()
	r.mu.Unlock()
	p := xstanza.Presence{To: to, Type: xstanza.UnavailablePresence, ID: xmpptrack.NewID()}
	var inner xml.TokenReader
	if status != "" {
		inner = xmlstream.Wrap(xmlstream.Token(xml.CharData(status)), xml.StartElement{Name: xml.Name{Local: "status"}})
	}
	_, err = wire.Write(ctx, s, p.Wrap(inner))
	return err
}

// discoInfo asks to for its disco#info and waits for the answer, which
// its own observer catches: only from the address asked, with our id.
func discoInfo(ctx context.Context, c *xmpptrack.Client, s *xmpp.Session, to jid.JID) (iqAnswer, error) {
	id := xmpptrack.NewID()
	answer := make(chan iqAnswer, 1)
	remove := c.Observe(xmpptrack.Observer{IQ: func(iq xstanza.IQ, rd xml.TokenReader) bool {
		if iq.ID != id || !iq.From.Equal(to) {
			return false
		}
		select {
		case answer <- readInfo(iq, rd):
		default: // answered already (the same id twice)
		}
		return true
	}})
	defer remove()
	iq := xstanza.IQ{ID: id, To: to, Type: xstanza.GetIQ}
	q := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: disco.NSInfo, Local: "query"}})
	if _, err := wire.Write(ctx, s, iq.Wrap(q)); err != nil {
		return iqAnswer{}, err
	}
	select {
	case a := <-answer:
		return a, a.err
	case <-ctx.Done():
		return iqAnswer{}, ctx.Err()
	}
}

// maxIQTokens bounds what readInfo reads of one answer.
const maxIQTokens = 4096

// readInfo reads a disco#info answer's identities and features.
func readInfo(iq xstanza.IQ, rd xml.TokenReader) (a iqAnswer) {
	var b tokbuf.Buffer
	b.ReadFrom(rd, maxIQTokens)
	if iq.Type == xstanza.ErrorIQ {
		return iqAnswer{err: stanzaError(b.Tokens())}
	}
	for _, tok := range b.Tokens() {
		start, ok := tok.(xml.StartElement)
		if !ok || start.Name.Space != disco.NSInfo {
			continue
		}
		switch start.Name.Local {
		case "identity":
			a.identities = append(a.identities, identity{Category: attr(start, "category"), Type: attr(start, "type")})
		case "feature":
			a.features = append(a.features, attr(start, "var"))
		}
	}
	return a
}

// stanzaError decodes the <error/> among a stanza's children.
func stanzaError(toks []xml.Token) error {
	var b tokbuf.Buffer
	for _, t := range toks {
		b.Add(t)
	}
	d := xml.NewTokenDecoder(&b)
	for {
		tok, err := d.Token()
		if err != nil {
			return xstanza.Error{Condition: xstanza.UndefinedCondition}
		}
		if start, ok := tok.(xml.StartElement); ok && start.Name.Local == "error" {
			var e xstanza.Error
			if err := d.DecodeElement(&e, &start); err != nil {
				return xstanza.Error{Condition: xstanza.UndefinedCondition}
			}
			return e
		}
	}
}

// connected rejoins the room after a connection whose stream could not be
// resumed (room membership does not survive a new session).
func (r *Room) connected(resumed bool) {
	if !resumed {
		r.mu.Lock()
		// Who was there is stale: the join brings everybody's presence again.
		clear(r.occupants)
		r.in = false
		r.rejoinLocked()
		r.mu.Unlock()
	}
}

// rejoinLocked starts the rejoin goroutine, unless we left the room or a
// rejoin is already on its way. The caller holds r.mu.
func (r *Room) rejoinLocked() {
	if r.left || r.leaving || r.rejoining {
		return
	}
	r.rejoining = true
	r.wg.Add(1)
	go r.rejoin()
}

// rejoin joins the room again, paced (see rejoinMin), until it succeeds,
// the room refuses us (the room is then settled: we are not an occupant
// and it will not take us), the client is closed (settled too), or the
// room is left.
func (r *Room) rejoin() {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		r.rejoining = false
		r.mu.Unlock()
	}()
	var closed <-chan struct{} // the client's end
	if r.c != nil {
		closed = r.c.Done()
	}
	for {
		r.mu.Lock()
		wait := time.Until(r.nextJoin)
		r.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-r.life.Done():
				t.Stop()
				return
			case <-closed:
				t.Stop()
				r.settle()
				return
			}
		}
		r.mu.Lock()
		if r.left || r.leaving {
			r.mu.Unlock()
			return
		}
		now := time.Now()
		if now.Sub(r.nextJoin) > rejoinMax {
			r.backoff = 0 // quiet for long enough: start over
		}
		r.backoff = min(max(2*r.backoff, rejoinMin), rejoinMax)
		r.nextJoin = now.Add(r.backoff)
		join := r.joinAgain
		if join == nil {
			join = r.join
		}
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.life, rejoinTimeout)
		err := join(ctx)
		cancel()
		var se xstanza.Error
		switch {
		case err == nil || r.life.Err() != nil:
			return
		case errors.As(err, &se) && se.Condition != xstanza.Conflict:
			// A conflict is worth another try: the nick may be held by our
			// own ghost from the lost session, which the room drops in time.
			r.log.Debug("muc: the room refused our rejoin", "room", r.room, "err", err)
			r.settle()
			return
		case errors.Is(err, xmpptrack.ErrClientClosed):
			r.settle() // no connection will ever come
			return
		}
		r.log.Debug("muc: rejoin failed; trying again", "room", r.room, "err", err)
	}
}

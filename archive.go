package xmpptrack

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/history"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/internal/tokbuf"
	"github.com/xmpptrack/xmpptrack/internal/wire"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Settling ambiguous messages by the account's archive.
//
// After a restart, the first resumption of the stored stream cannot settle
// every restored message by the server's <resumed h>:
//
//   - A message is written ahead to the store before the wire, and its
//     stream-management number is recorded a few milliseconds after it is
//     written. A process killed in between leaves messages without a
//     number; when h covers a number guessed for one of them, any of them
//     may have reached the server.
//   - A message that h does not cover, numbered or not, may have reached
//     the server too: ejabberd 23.01 answers <resume/> with the count the
//     session of the killed process's connection had reached when it
//     handed over, while that session still routes what it had read from
//     the connection.
//
// So that resumption holds back every restored message that h does not
// settle (sm.Config.OnAmbiguous; its stored number, which the stream no
// longer counts, is voided). The server's own archive of the account's
// messages (XEP-0313) says which of them it has: the client looks each
// one up there, by its id or origin-id, among the messages the account
// sent to its recipient from the time it was written ahead (less a clock
// skew allowance) up to the check. One found there is settled as
// DELIVERED_TO_SERVER; one not found, or when the query fails or times
// out, the server has no archive, or the message went to a group chat
// (rooms archive apart), is written again (at least once, never lost). A
// later resumption within the process retransmits what its h does not
// cover, as usual, and hands back only what is still held.

const (
	// archiveTimeout bounds the whole check of one resumption's ambiguous
	// messages: whatever it has not found by then is written again.
	archiveTimeout = 10 * time.Second
	// archiveSkew widens the searched time range, from the messages'
	// earliest write-ahead time up to the check, on both sides: the server
	// stamps its archive with its own clock.
	archiveSkew = 2 * time.Second
	// archivePage is the page size asked for (servers may cap it lower:
	// Prosody's default is 50).
	archivePage = 100
)

// Reasons given for a message written again.
var (
	errNotArchived  = errors.New("not in the archive")
	errRoomArchived = errors.New("a group chat message (rooms keep their own archive)")
)

// onAmbiguous takes the messages a resumption held back
// (sm.Config.OnAmbiguous, on the connecting goroutine): connect voids
// their stored numbers before anything is written on the stream, and
// publish checks them once the session is handed out.
func (c *Client) onAmbiguous(ss []sm.Stanza) {
	c.ambiguous.Store(&ss)
}

// voidHeld voids, in the store, the numbers of the messages the resumption
// of this connection held back (see durable.void), before anything is
// written on the resumed stream: the next stanza written takes the number
// of the first of them, and a process killed before a void was saved
// would leave a successor that number beside the server's count, which
// then covers it: the message taken as received, never sent. An error
// (the store failing, ctx ending) ends the connection before it writes.
func (c *Client) voidHeld(ctx context.Context) error {
	p := c.ambiguous.Load()
	if c.dur == nil || p == nil || len(*p) == 0 {
		return nil
	}
	if err := c.dur.void(ctx, *p); err != nil {
		return fmt.Errorf("xmpptrack: voiding the numbers of the messages the resumption held back: %w", err)
	}
	return nil
}

// startArchiveCheck starts the check of the messages the connection's
// resumption held back, if any, and returns a channel closed when it
// ended (nil if there is none). The caller holds c.mu (publish). Only Dial
// waits for it, on the first connection: on a later one (the first was
// lost before its check ended) senders have the session meanwhile, so a
// message written again may go out after messages sent during the check,
// which is at most archiveTimeout. Each keeps its own tracker; only the
// order on the wire differs.
func (c *Client) startArchiveCheck(cn conn) chan struct{} {
	p := c.ambiguous.Swap(nil)
	if p == nil || len(*p) == 0 || !cn.resumed {
		return nil // (a stream bound anew hands them to the Policy)
	}
	done := make(chan struct{})
	c.workers.Go(func() {
		defer close(done)
		c.settleAmbiguous(cn, *p)
	})
	return done
}

// settleAmbiguous looks up the held messages in the account's archive and
// settles them (sm.State.ResolveAmbiguous). It runs on a goroutine of its
// own, never on the one that reads the stream.
func (c *Client) settleAmbiguous(cn conn, held []sm.Stanza) {
	wait := archiveTimeout
	if c.cfg.archiveTimeout > 0 {
		wait = c.cfg.archiveTimeout
	}
	ctx, cancel := context.WithTimeout(cn.ctx, wait)
	found, why := c.searchArchive(ctx, cn, held)
	cancel()
	if cn.ctx.Err() != nil {
		// The connection ended: they stay held, and the next resumption
		// hands them over again.
		c.log.Debug("xmpptrack: the connection ended during the archive check", "held", len(held))
		return
	}
	settled, resent, err := c.sm.ResolveAmbiguous(cn.ctx, cn.s, func(s sm.Stanza) bool {
		if t := c.reg.Find(s.ID); t != nil && (t.State() == tracking.DeliveredToRecipient || t.State() == tracking.SeenByRecipient) {
			// The recipient's receipt or marker came meanwhile (the server
			// replays what we had not acknowledged): proof enough.
			c.log.Info("xmpptrack: a restored message the resumption could not settle reached its recipient meanwhile: settled as received by the server",
				"id", s.ID)
			return true
		}
		if found[s.ID] {
			c.log.Info("xmpptrack: a restored message the resumption could not settle is in the account's archive: settled as received by the server",
				"id", s.ID)
			return true
		}
		c.log.Warn("xmpptrack: a restored message the resumption could not settle was not found in the account's archive; sending it again (the recipient may get it twice)",
			"id", s.ID, "reason", why[s.ID])
		return false
	})
	if err != nil {
		// The connection ended: what was not written stays held, and the
		// next resumption hands it over again.
		c.log.Debug("xmpptrack: settling the ambiguous messages was cut short", "err", err)
	}
	c.log.Info("xmpptrack: ambiguous messages after the resumption settled by the archive",
		"held", len(held), "found", settled, "resent", resent)
}

// searchArchive looks for the held messages in the account's archive:
// found holds the ids it found, why the reason for each other one.
func (c *Client) searchArchive(ctx context.Context, cn conn, held []sm.Stanza) (found map[string]bool, why map[string]error) {
	found, why = map[string]bool{}, map[string]error{}
	type group struct {
		with  jid.JID
		ids   map[string]bool
		first time.Time
	}
	groups := map[string]*group{}
	for _, s := range held {
		to, err := jid.Parse(s.To)
		switch {
		case err != nil || s.Name != "message":
			why[s.ID] = errNotArchived
			continue
		case isGroupChat(s.Raw):
			why[s.ID] = errRoomArchived
			continue
		}
		key := to.Bare().String()
		g := groups[key]
		if g == nil {
			g = &group{with: to.Bare(), ids: map[string]bool{}, first: s.Sent}
			groups[key] = g
		}
		g.ids[s.ID] = true
		if s.Sent.Before(g.first) {
			g.first = s.Sent
		}
	}
	// From the earliest write-ahead time up to now: a message may reach
	// the wire long after it was written ahead (a write waiting for a
	// reconnect, paced re-sends, a number voided and written on a later
	// stream), and the server archives it then.
	now := time.Now()
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		err := c.queryArchive(ctx, cn, history.Query{
			With: g.with, Start: g.first.Add(-archiveSkew), End: now.Add(archiveSkew + time.Second),
		}, g.ids, found)
		for id := range g.ids {
			switch {
			case found[id]:
			case err != nil:
				why[id] = fmt.Errorf("the archive query failed: %w", err)
			default:
				why[id] = errNotArchived
			}
		}
	}
	return found, why
}

// isGroupChat reports whether a stored stanza is a group chat message.
func isGroupChat(raw []byte) bool {
	d := xml.NewDecoder(bytes.NewReader(raw))
	for {
		tok, err := d.RawToken()
		if err != nil {
			return false
		}
		if start, ok := tok.(xml.StartElement); ok {
			for _, a := range start.Attr {
				if a.Name.Space == "" && a.Name.Local == "type" {
					return a.Value == string(xstanza.GroupChatMessage)
				}
			}
			return false
		}
	}
}

// queryArchive pages through the archive with the filter f (oldest first)
// until every id of want is in found, the archive has no more, or ctx
// ends. Each page is an IQ written on the connection; the tap hands its
// results and its answer to the query (see archiveQuery).
func (c *Client) queryArchive(ctx context.Context, cn conn, f history.Query, want, found map[string]bool) error {
	f.Limit = archivePage
	for {
		q := &archiveQuery{id: NewID(), iqID: NewID(), self: c.account.Bare(), want: want, done: make(chan struct{})}
		f.ID = q.id
		iq := xstanza.IQ{ID: q.iqID, Type: xstanza.SetIQ}.Wrap(f.TokenReader())
		c.archive.Store(q)
		// The connection's context, not ctx: a timeout must not cut a
		// write in the middle (wire.Write would close the connection).
		_, err := wire.Write(cn.ctx, cn.s, iq)
		if err == nil {
			select {
			case <-q.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		c.archive.CompareAndSwap(q, nil)
		q.mu.Lock()
		q.over = true // a late answer changes nothing
		fin, qerr := q.fin, q.err
		if err == nil && qerr == nil {
			for id := range q.found {
				found[id] = true
			}
		}
		q.mu.Unlock()
		if err == nil {
			err = qerr
		}
		if err != nil {
			// What an unfinished or failed query showed is not taken as
			// proof: those messages are written again (at least once).
			return err
		}
		all := true
		for id := range want {
			all = all && found[id]
		}
		if all || fin.Complete || fin.Last == "" || fin.Last == f.PageID {
			return nil
		}
		f.PageID = fin.Last
	}
}

// archiveQuery is one page of an archive query in flight. The tap, on the
// goroutine that reads the stream, takes its results (messages carrying
// <result queryid/>) and its answer (the IQ result with <fin/>, or an
// error); they come in that order.
type archiveQuery struct {
	id, iqID string
	self     jid.JID         // our bare JID: results come from it, and so do the messages we sent
	want     map[string]bool // read-only

	mu    sync.Mutex
	found map[string]bool
	fin   archiveFin
	err   error
	done  chan struct{} // closed once the answer came
	over  bool
}

// archiveFin is the <fin/> of a query page: whether the archive has no
// more, and the RSM id of the page's last result.
type archiveFin struct {
	Complete bool   `xml:"complete,attr"`
	Last     string `xml:"set>last"`
}

// errArchiveAnswer is the error of an archive query that the server
// answered with an error (no archive, a filter it refused).
type errArchiveAnswer struct{ err xstanza.Error }

func (e errArchiveAnswer) Error() string {
	s := "the server refused the archive query: " + string(e.err.Condition)
	if t := errorText(e.err); t != "" {
		s += " (" + t + ")"
	}
	return s
}

// fromAccount reports whether a stanza's from attribute is absent or our
// bare JID (which mellium reports as empty), as for the results of a query
// to our own archive.
func (q *archiveQuery) fromAccount(start *xml.StartElement) bool {
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == "from" && a.Value != "" {
			j, err := jid.Parse(a.Value)
			return err == nil && j.Equal(q.self)
		}
	}
	return true
}

// result takes a message that may be one of the query's results. Its
// tokens (after start) are in b. It reports whether it was one: a
// <result xmlns='urn:xmpp:mam:2' queryid/> of this query, whose forwarded
// message we sent (from our account) with a wanted id or origin-id, counts
// as found.
func (q *archiveQuery) result(b *tokbuf.Buffer) bool {
	depth := 0
	ours, inMsg, msgDepth := false, false, 0
	var ids []string
	for _, tok := range b.Tokens() {
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1:
				if t.Name.Space != history.NS || t.Name.Local != "result" || attr(&t, "queryid") != q.id {
					return false
				}
			case depth == 3 && t.Name.Local == "message" && isClient(t.Name.Space):
				inMsg, msgDepth = true, depth
				from, err := jid.Parse(attr(&t, "from"))
				ours = err == nil && from.Bare().Equal(q.self)
				ids = append(ids, attr(&t, "id"))
			case inMsg && depth == msgDepth+1 && t.Name.Space == stanza.NSSID && t.Name.Local == "origin-id":
				ids = append(ids, attr(&t, "id"))
			}
		case xml.EndElement:
			if inMsg && depth == msgDepth {
				inMsg = false
			}
			depth--
		}
	}
	if ours {
		q.mu.Lock()
		for _, id := range ids {
			if id != "" && q.want[id] && !q.over {
				if q.found == nil {
					q.found = map[string]bool{}
				}
				q.found[id] = true
			}
		}
		q.mu.Unlock()
	}
	return true
}

// answer takes the IQ that answers the query, if start is it, reading
// its children from r.
func (q *archiveQuery) answer(r xml.TokenReader, start *xml.StartElement) bool {
	if attr(start, "id") != q.iqID {
		return false
	}
	typ := attr(start, "type")
	if typ != string(xstanza.ResultIQ) && typ != string(xstanza.ErrorIQ) {
		return false
	}
	var fin archiveFin
	var err error
	d := xml.NewTokenDecoder(r)
	for {
		tok, terr := d.Token()
		if terr != nil {
			break
		}
		t, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch {
		case typ == string(xstanza.ResultIQ) && t.Name.Space == history.NS && t.Name.Local == "fin":
			if derr := d.DecodeElement(&fin, &t); derr != nil {
				err = fmt.Errorf("the archive's answer: %w", derr)
			}
		case typ == string(xstanza.ErrorIQ) && t.Name.Local == "error":
			var se xstanza.Error
			if derr := d.DecodeElement(&se, &t); derr != nil {
				err = fmt.Errorf("the archive's answer: %w", derr)
			} else {
				err = errArchiveAnswer{se}
			}
		default:
			d.Skip()
		}
	}
	if typ == string(xstanza.ErrorIQ) && err == nil {
		err = errArchiveAnswer{xstanza.Error{Condition: xstanza.UndefinedCondition}}
	}
	q.mu.Lock()
	if !q.over {
		q.over = true
		q.fin, q.err = fin, err
		close(q.done)
	}
	q.mu.Unlock()
	return true
}

// attr returns the value of an attribute without namespace, "" if absent.
func attr(start *xml.StartElement, name string) string {
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// archiveMessage is the tap's part for a message while an archive query is
// in flight: a result of the query (from our account, with a <result/>
// child) is taken by it; any other message goes on through s.message.
func (s *tapState) archiveMessage(q *archiveQuery, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	b := &s.arch
	defer b.Reset()
	complete, err := b.ReadFrom(t, maxBufferedTokens)
	if err != nil {
		return err
	}
	if complete && q.result(b) {
		return nil
	}
	b.Rewind()
	var r xml.TokenReader = b
	if !complete {
		r = xmlstream.MultiReader(b, t)
	}
	return s.message(struct {
		xml.TokenReader
		xmlstream.Encoder
	}{r, t}, start)
}

// archiveAnswer is the tap's part for an IQ while an archive query is in
// flight: it reports whether the IQ answered it.
func (c *Client) archiveAnswer(t xml.TokenReader, start *xml.StartElement) bool {
	q := c.archive.Load()
	return q != nil && q.answer(t, start)
}

// archiveResult reports whether start may be a result of the archive query
// in flight, and returns that query.
func (c *Client) archiveResult(start *xml.StartElement) *archiveQuery {
	q := c.archive.Load()
	if q == nil || !q.fromAccount(start) {
		return nil
	}
	return q
}

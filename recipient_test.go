package xmpptrack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// checkAnswer checks that w is a bare receipt or marker: addressed to to,
// of type typ, referring to ref with its own fresh id, and carrying nothing
// that asks for an answer.
func checkAnswer(t *testing.T, w element, to, typ, ref string, marker bool) {
	t.Helper()
	name, space := "received", stanza.NSReceipts
	if marker {
		name, space = "displayed", stanza.NSMarkers
	}
	if w.XMLName.Local != "message" || w.attr("to") != to || w.attr("type") != typ {
		t.Errorf("answer %s, want a %s message to %s", w.String(), typ, to)
	}
	if c := w.child(space, name); c == nil || c.attr("id") != ref {
		t.Errorf("answer %s, want <%s id='%s'/>", w.String(), name, ref)
	}
	if id := w.attr("id"); id == "" || id == ref {
		t.Errorf("answer id %q: want a fresh one", id)
	}
	for _, c := range w.Children {
		switch {
		case c.XMLName.Space == stanza.NSReceipts && c.XMLName.Local == "request",
			c.XMLName.Space == stanza.NSMarkers && c.XMLName.Local == "markable",
			c.XMLName.Local == "body":
			t.Errorf("answer %s carries <%s/>", w.String(), c.XMLName.Local)
		}
	}
}

// nextAnswer returns the next message the client wrote.
func nextAnswer(t *testing.T, e *badInputEnv) element {
	t.Helper()
	return e.written(func(element) bool { return true })
}

func TestRecipientAnswersReceiptRequests(t *testing.T) {
	e := newBadInputEnv(t, Config{})
	tests := []struct {
		name, from, attrs, children string
		wantType                    string
	}{
		{"chat", "bob@example.org/pc", "type='chat'", "<body>hi</body>", "chat"},
		{"normal", "bob@example.org/pc", "type='normal'", "<body>hi</body>", "normal"},
		{"no type is normal", "bob@example.org/pc", "", "<body>hi</body>", "normal"},
		{"unknown type is normal", "bob@example.org/pc", "type='whatever'", "<body>hi</body>", "normal"},
		{"headline", "bob@example.org/pc", "type='headline'", "<body>hi</body>", "headline"},
		{"no body", "bob@example.org/pc", "type='chat'", "", "chat"},
		{"with markable and thread", "bob@example.org/pc", "type='chat'", "<body>hi</body><thread>t1</thread><markable xmlns='urn:xmpp:chat-markers:0'/>", "chat"},
		{"bare JID sender", "bob@example.org", "type='chat'", "<body>hi</body>", "chat"},
		{"a stranger", "stranger@elsewhere.example/x", "type='chat'", "<body>hi</body>", "chat"},
		{"a room occupant in private", "room@conference.example.org/nick", "type='chat'", "<body>hi</body><x xmlns='http://jabber.org/protocol/muc#user'/>", "chat"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			id := fmt.Sprintf("req-%d", i)
			e.inject(`<message from='%s' to='alice@localhost/phone' id='%s' %s>%s<request xmlns='urn:xmpp:receipts'/></message>`,
				tc.from, id, tc.attrs, tc.children)
			checkAnswer(t, nextAnswer(t, e), tc.from, tc.wantType, id, false)
		})
	}
	e.t = t
	e.noAnswer()
	e.finish()
}

// TestRecipientDoesNotAnswer: each input is followed by a probe; the
// client's next message must be the probe's receipt.
func TestRecipientDoesNotAnswer(t *testing.T) {
	req := "<request xmlns='urn:xmpp:receipts'/>"
	inner := func(from, to string) string {
		return fmt.Sprintf(`<message from='%s' to='%s' id='inner' type='chat'><body>hi</body>%s</message>`, from, to, req)
	}
	tests := []struct{ name, raw string }{
		{"own bare JID", `<message from='alice@localhost' id='x' type='chat'><body>hi</body>` + req + `</message>`},
		{"own other resource", `<message from='alice@localhost/laptop' id='x' type='chat'><body>hi</body>` + req + `</message>`},
		{"own full JID", `<message from='alice@localhost/phone' id='x' type='chat'><body>hi</body>` + req + `</message>`},
		{"no from: our server", `<message id='x' type='chat'><body>hi</body>` + req + `</message>`},
		{"error", `<message from='bob@example.org/pc' id='x' type='error'><body>hi</body>` + req + `<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`},
		{"received carbon", carbon("alice@localhost", "received", "x", inner("bob@example.org/pc", "alice@localhost"))},
		{"sent carbon", carbon("alice@localhost", "sent", "x", inner("alice@localhost/laptop", "bob@example.org"))},
		{"forged carbon", carbon("mallory@evil.example", "received", "x", inner("bob@example.org/pc", "alice@localhost"))},
		{"groupchat", `<message from='room@conference.example.org/nick' id='x' type='groupchat'><body>hi</body>` + req + `</message>`},
		{"receipt", `<message from='bob@example.org/pc' id='x' type='chat'>` + receiptFor("m") + req + `</message>`},
		{"legacy received marker", `<message from='bob@example.org/pc' id='x' type='chat'><received xmlns='urn:xmpp:chat-markers:0' id='m'/>` + req + `</message>`},
		{"displayed marker", `<message from='bob@example.org/pc' id='x' type='chat'>` + displayedFor("m") + req + `</message>`},
		{"acknowledged marker", `<message from='bob@example.org/pc' id='x' type='chat'><acknowledged xmlns='urn:xmpp:chat-markers:0' id='m'/>` + req + `</message>`},
		{"no id", `<message from='bob@example.org/pc' type='chat'><body>hi</body>` + req + `</message>`},
		{"invalid from", `<message from='bob@@example.org' id='x' type='chat'><body>hi</body>` + req + `</message>`},
	}
	e := newBadInputEnv(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.inject("%s", tc.raw)
			e.noAnswer()
		})
	}
	e.t = t
	e.finish()
}

// TestRecipientNoReceipts: with Config.NoReceipts nothing is answered; a
// displayed marker, the only thing the client writes, proves it.
func TestRecipientNoReceipts(t *testing.T) {
	e := newBadInputEnv(t, Config{NoReceipts: true})
	e.inject(`<message from='bob@example.org/pc' id='q1' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message>`, stanza.NSMarkers)
	e.app.waitFor(t, "q1")
	if !e.c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark")
	}
	checkAnswer(t, nextAnswer(t, e), "bob@example.org", "chat", "q1", true)
	e.finish()
}

func TestRecipientMarkDisplayed(t *testing.T) {
	e := newBadInputEnv(t, Config{})
	markable := "<markable xmlns='urn:xmpp:chat-markers:0'/>"
	e.inject(`<message from='bob@example.org/pc' id='b1' type='chat'><body>1</body>%s</message>`, markable)
	e.inject(`<message from='bob@example.org/laptop' id='b2' type='chat'><body>2</body>%s</message>`, markable)
	e.inject(`<message from='bob@example.org/pc' id='b3' type='chat'><body>3, not markable</body></message>`)
	e.inject(`<message from='carol@example.org/pc' id='c1' type='normal'><body>1</body>%s</message>`, markable)
	e.app.waitFor(t, "c1")

	// The newest markable message of the conversation, to the bare JID, for
	// any resource of the peer.
	if !e.c.MarkDisplayed(jid.MustParse("bob@example.org/whatever")) {
		t.Fatal("nothing to mark for bob")
	}
	checkAnswer(t, nextAnswer(t, e), "bob@example.org", "chat", "b2", true)
	if e.c.MarkDisplayed(bob) {
		t.Error("marked twice")
	}
	if e.c.MarkDisplayed(jid.MustParse("dave@example.org")) {
		t.Error("marked a peer that sent nothing")
	}
	if !e.c.MarkDisplayed(jid.MustParse("carol@example.org")) {
		t.Fatal("nothing to mark for carol")
	}
	checkAnswer(t, nextAnswer(t, e), "carol@example.org", "normal", "c1", true)

	// A message with a thread is marked in its thread.
	e.inject(`<message from='bob@example.org/pc' id='b4' type='chat'><body>4</body><thread>th</thread>%s</message>`, markable)
	e.app.waitFor(t, "b4")
	if !e.c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark")
	}
	w := nextAnswer(t, e)
	checkAnswer(t, w, "bob@example.org", "chat", "b4", true)
	if th := w.child("jabber:client", "thread"); th == nil || th.Text != "th" {
		t.Errorf("marker %s without the thread", w.String())
	}
	e.noAnswer()
	e.finish()
}

// TestRecipientNeverMarks: messages that must never be marked displayed,
// and Config.NoMarkers.
func TestRecipientNeverMarks(t *testing.T) {
	markable := "<markable xmlns='urn:xmpp:chat-markers:0'/>"
	inner := func(from, to string) string {
		return fmt.Sprintf(`<message from='%s' to='%s' id='inner' type='chat'><body>hi</body>%s</message>`, from, to, markable)
	}
	privateInner := `<message from='room@conference.example.org/nick' to='alice@localhost' id='inner' type='chat'><body>hi</body>` + markable + mucUserX + `</message>`
	tests := []struct {
		name, peer, raw string
	}{
		{"own message", "alice@localhost", `<message from='alice@localhost/laptop' id='x' type='chat'><body>hi</body>` + markable + `</message>`},
		{"error", "bob@example.org", `<message from='bob@example.org/pc' id='x' type='error'><body>hi</body>` + markable + `<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`},
		{"received carbon", "bob@example.org", carbon("alice@localhost", "received", "x", inner("bob@example.org/pc", "alice@localhost"))},
		{"sent carbon", "bob@example.org", carbon("alice@localhost", "sent", "x", inner("alice@localhost/laptop", "bob@example.org"))},
		{"groupchat", "room@conference.example.org", `<message from='room@conference.example.org/nick' id='x' type='groupchat'><body>hi</body>` + markable + `</message>`},
		{"received carbon of an occupant's private message", "room@conference.example.org/nick", carbon("alice@localhost", "received", "x", privateInner)},
		{"received carbon of an occupant's private message, the room", "room@conference.example.org", carbon("alice@localhost", "received", "x", privateInner)},
		{"sent carbon of a private message to an occupant", "room@conference.example.org/nick", carbon("alice@localhost", "sent", "x", `<message from='alice@localhost/laptop' to='room@conference.example.org/nick' id='inner' type='chat'><body>hi</body>`+markable+mucUserX+`</message>`)},
		{"receipt", "bob@example.org", `<message from='bob@example.org/pc' id='x' type='chat'>` + receiptFor("m") + markable + `</message>`},
		{"marker for a marker", "bob@example.org", `<message from='bob@example.org/pc' id='x' type='chat'>` + displayedFor("m") + markable + `</message>`},
		{"not markable", "bob@example.org", `<message from='bob@example.org/pc' id='x' type='chat'><body>hi</body></message>`},
	}
	e := newBadInputEnv(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.inject("%s", tc.raw)
			e.barrier()
			if e.c.MarkDisplayed(jid.MustParse(tc.peer)) {
				t.Errorf("marked %s", tc.peer)
			}
			e.noAnswer()
		})
	}
	e.t = t
	e.finish()

	t.Run("NoMarkers", func(t *testing.T) {
		e := newBadInputEnv(t, Config{NoMarkers: true})
		e.inject(`<message from='bob@example.org/pc' id='q1' type='chat'><body>hi</body>%s</message>`, markable)
		e.barrier()
		if e.c.MarkDisplayed(bob) {
			t.Error("MarkDisplayed with NoMarkers queued a marker")
		}
		e.noAnswer()
		e.finish()
	})
}

// TestRecipientBounds: the outbox and the markable map are bounded; a full
// outbox drops answers instead of blocking the stream, and keeps the
// message to mark for a later MarkDisplayed.
func TestRecipientBounds(t *testing.T) {
	c := newTapClient(t, Config{}) // nobody drains its outbox
	fed := feedTap(t, c, nil, newStanzaStream(outboxSize+100, func(i int) string {
		return fmt.Sprintf(`<message from='peer%d@example.org/x' id='q%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message>`, i, i, stanza.NSMarkers)
	}))
	if fed != outboxSize+100 {
		t.Fatalf("fed %d", fed)
	}
	if n := len(c.rcp.out); n != outboxSize {
		t.Fatalf("outbox holds %d, want %d", n, outboxSize)
	}
	peer := jid.MustParse("peer0@example.org")
	if c.MarkDisplayed(peer) {
		t.Fatal("MarkDisplayed queued into a full outbox")
	}
	if got := c.rcp.take(nil); len(got) != outboxSize || got[0].ref != "q0" {
		t.Fatalf("took %d answers", len(got))
	}
	if !c.MarkDisplayed(peer) {
		t.Fatal("the message to mark was lost with the full outbox")
	}
	if got := c.rcp.take(nil); len(got) != 1 || !got[0].marker || got[0].ref != "q0" || got[0].to.String() != "peer0@example.org" {
		t.Errorf("outbox %+v, want the marker for q0", got)
	}

	// The markable map keeps the newest maxMarkable peers at most.
	c = newTapClient(t, Config{})
	feedTap(t, c, nil, newStanzaStream(maxMarkable+50, func(i int) string {
		return fmt.Sprintf(`<message from='peer%d@example.org/x' id='m%d' type='chat'><body>hi</body><markable xmlns='%s'/></message>`, i, i, stanza.NSMarkers)
	}))
	c.rcp.mu.Lock()
	n := c.rcp.marks.count()
	c.rcp.mu.Unlock()
	if n != maxMarkable {
		t.Errorf("markable map holds %d, want %d", n, maxMarkable)
	}
	if !c.MarkDisplayed(jid.MustParse(fmt.Sprintf("peer%d@example.org", maxMarkable+49))) {
		t.Error("the newest peer cannot be marked")
	}
}

// TestRecipientBurst: a burst of receipt requests is answered in full, each
// receipt once, or the dropped ones are logged. It logs how many were
// dropped (none is expected: the outbox absorbs the writer's scheduling
// delays, and the writer writes answers in batches).
//
// The scripted server writes the burst (594 kB) in one write, and its <a/>
// to our <r/> waits behind it, as a server's would behind its backlog.
// Under the race detector on a loaded machine the client takes longer than
// the ack bound (5 s) to read it: the stanzas it reads meanwhile keep the
// connection (sm's "Dead connections"), so the default bound applies here
// (with the bound counting <a/> alone, the client resumed on a new
// connection, and the script, which does not re-send what the client had
// not counted, never sent the rest). The test checks that the connection
// was never replaced; the wait fails only when the application gets
// nothing for testWait.
func TestRecipientBurst(t *testing.T) {
	const n = 5000
	logs := &logRecorder{}
	app := newAppLog()
	_, pc := newPeer(t, Config{Handler: app, Logger: slog.New(logs)})
	conns := func() int {
		pc.srv.mu.Lock()
		defer pc.srv.mu.Unlock()
		return len(pc.srv.live)
	}
	t.Cleanup(func() {
		if t.Failed() { // what the client did meanwhile (a lost connection?)
			t.Logf("connections %d; logs %q", conns(), logs.all())
		}
	})
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `<message from='bob@example.org/pc' id='q%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
	}
	pc.write(b.String())
	app.waitForMoving(t, fmt.Sprintf("q%d", n-1)) // every request was seen: drops are logged by now
	if used := conns(); used != 1 {
		t.Fatalf("the client used %d connections, want 1 (it lost the first: %q)", used, logs.all())
	}
	dropped := logs.count("outbox full")
	seen := make(map[string]bool, n)
	for range n - dropped {
		e := pc.nextMessage(t)
		r := e.child(stanza.NSReceipts, "received")
		if r == nil || seen[r.attr("id")] || !strings.HasPrefix(r.attr("id"), "q") {
			t.Fatalf("wrote %s, want a receipt not written before", e.String())
		}
		seen[r.attr("id")] = true
	}
	t.Logf("%d of %d receipts dropped (outbox %d, batch %d)", dropped, n, outboxSize, answerBatch)
}

// TestRecipientMarkersCoalesce: a displayed marker replaces the one still
// queued for the same peer: in its place, unless a receipt to that peer
// was queued after it (a marker never overtakes a receipt to its peer:
// the sender would not take it as proof for that receipt's message); other
// answers stay.
func TestRecipientMarkersCoalesce(t *testing.T) {
	c := newTapClient(t, Config{}) // nobody drains its outbox
	markable := `<markable xmlns='urn:xmpp:chat-markers:0'/>`
	msg := func(from, id string) io.Reader {
		return strings.NewReader(fmt.Sprintf(`<stream xmlns='jabber:client'><message from='%s' id='%s' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/>%s</message></stream>`, from, id, markable))
	}
	carol := jid.MustParse("carol@example.org")
	feedTap(t, c, nil, msg("bob@example.org/pc", "b1"))
	if !c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark for b1")
	}
	feedTap(t, c, nil, msg("carol@example.org/pc", "c1"))
	if !c.MarkDisplayed(carol) {
		t.Fatal("nothing to mark for c1")
	}
	feedTap(t, c, nil, msg("bob@example.org/laptop", "b2"))
	if !c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark for b2")
	}
	type want struct {
		ref    string
		marker bool
	}
	check := func(wants ...want) {
		t.Helper()
		got := c.rcp.take(nil)
		var gotW []want
		for _, a := range got {
			gotW = append(gotW, want{a.ref, a.marker})
		}
		if !slices.Equal(gotW, wants) {
			t.Errorf("outbox %v, want %v", gotW, wants)
		}
	}
	// b2's marker replaced b1's, after b2's receipt.
	check(want{"b1", false}, want{"c1", false}, want{"c1", true}, want{"b2", false}, want{"b2", true})
	// Without a receipt to bob after his queued marker, the new one takes
	// its place.
	feedTap(t, c, nil, msg("bob@example.org/pc", "b4"))
	if !c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark for b4")
	}
	feedTap(t, c, nil, msg("carol@example.org/pc", "c2"))
	feedTap(t, c, nil, strings.NewReader(fmt.Sprintf(`<stream xmlns='jabber:client'><message from='bob@example.org/pc' id='b5' type='chat'><body>hi</body>%s</message></stream>`, markable)))
	if !c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark for b5")
	}
	check(want{"b4", false}, want{"b5", true}, want{"c2", false})
	// A marker taken by the writer is not replaced: the next one is queued anew.
	feedTap(t, c, nil, msg("bob@example.org/pc", "b3"))
	if !c.MarkDisplayed(bob) {
		t.Fatal("nothing to mark for b3")
	}
	check(want{"b3", false}, want{"b3", true})
}

// TestRecipientMarkEveryMessage: a bot that marks every message of a peer
// that asks for receipts, while nobody drains the outbox, keeps every
// receipt and one marker, for the last message, after them: a moved
// marker leaves no slot behind. With the outbox full, a marker that
// replaces a queued one still gets in.
func TestRecipientMarkEveryMessage(t *testing.T) {
	c := newTapClient(t, Config{}) // nobody drains its outbox
	const n = 3000
	for i := range n {
		feedTap(t, c, nil, strings.NewReader(fmt.Sprintf(`<stream xmlns='jabber:client'><message from='bob@example.org/pc' id='q%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message></stream>`, i, stanza.NSMarkers)))
		if !c.MarkDisplayed(bob) {
			t.Fatalf("nothing to mark for q%d", i)
		}
	}
	c.rcp.mu.Lock()
	out := slices.Clone(c.rcp.out)
	c.rcp.mu.Unlock()
	if len(out) != n+1 {
		t.Fatalf("outbox holds %d answers, want %d receipts and a marker", len(out), n)
	}
	for i, a := range out[:n] {
		if a.marker || a.ref != fmt.Sprintf("q%d", i) {
			t.Fatalf("answer %d is %+v, want the receipt for q%d", i, a, i)
		}
	}
	if last := out[n]; !last.marker || last.ref != fmt.Sprintf("q%d", n-1) {
		t.Fatalf("last answer %+v, want the marker for q%d", last, n-1)
	}

	// Fill the outbox with carol's receipts and a receipt to bob.
	feedTap(t, c, nil, newStanzaStream(outboxSize-len(out)-1, func(i int) string {
		return fmt.Sprintf(`<message from='carol@example.org/x' id='c%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
	}))
	feedTap(t, c, nil, strings.NewReader(fmt.Sprintf(`<stream xmlns='jabber:client'><message from='bob@example.org/pc' id='last' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='%s'/></message></stream>`, stanza.NSMarkers)))
	if !c.MarkDisplayed(bob) {
		t.Fatal("a marker replacing a queued one was refused with the outbox full")
	}
	got := c.rcp.take(nil)
	if len(got) != outboxSize || got[len(got)-2].marker || got[len(got)-2].ref != "last" || !got[len(got)-1].marker || got[len(got)-1].ref != "last" {
		t.Errorf("outbox of %d answers ending with %+v, want %d ending with the receipt and the marker for last", len(got), got[len(got)-2:], outboxSize)
	}
}

// TestRecipientRoomMarkFullOutbox: a room's marker refused because the
// outbox is full leaves the room's newest message to mark later.
func TestRecipientRoomMarkFullOutbox(t *testing.T) {
	c := newTapClient(t, Config{})
	room := jid.MustParse("room@conf.example.org")
	newest := "g1"
	c.Observe(Observer{Room: room, Route: func(context.Context, Message) (*tracking.MessageTracker, error) { return nil, nil },
		Mark: func() string { id := newest; newest = ""; return id }})
	feedTap(t, c, nil, newStanzaStream(outboxSize, func(i int) string {
		return fmt.Sprintf(`<message from='carol@example.org/x' id='c%d' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message>`, i)
	}))
	if c.MarkDisplayed(room) {
		t.Fatal("a room marker queued into a full outbox")
	}
	c.rcp.take(nil)
	if !c.MarkDisplayed(room) {
		t.Errorf("the room's newest message was lost with the full outbox (newest %q)", newest)
	}
}

// TestRecipientMarkerIndexes: after bob's marker moves behind his receipt,
// carol's queued marker, which sat after it, is still replaced in its own
// place (the indexes of the markers after the moved one shift down).
func TestRecipientMarkerIndexes(t *testing.T) {
	c := newTapClient(t, Config{})
	carol := jid.MustParse("carol@example.org")
	msg := func(from, id string, receipt bool) io.Reader {
		req := ""
		if receipt {
			req = `<request xmlns='urn:xmpp:receipts'/>`
		}
		return strings.NewReader(fmt.Sprintf(`<stream xmlns='jabber:client'><message from='%s' id='%s' type='chat'><body>hi</body>%s<markable xmlns='urn:xmpp:chat-markers:0'/></message></stream>`, from, id, req))
	}
	feedTap(t, c, nil, msg("bob@example.org/pc", "b1", false))
	c.MarkDisplayed(bob)
	feedTap(t, c, nil, msg("carol@example.org/pc", "c1", false))
	c.MarkDisplayed(carol)
	feedTap(t, c, nil, msg("bob@example.org/pc", "b2", true))
	c.MarkDisplayed(bob) // moves behind b2's receipt
	feedTap(t, c, nil, msg("carol@example.org/pc", "c2", false))
	c.MarkDisplayed(carol) // replaces c1's marker in its place
	var got []string
	for _, a := range c.rcp.take(nil) {
		k := "r"
		if a.marker {
			k = "m"
		}
		got = append(got, a.ref+k)
	}
	if want := "c2m b2r b2m"; strings.Join(got, " ") != want {
		t.Errorf("outbox %v, want %s", got, want)
	}
}

// TestRecipientRoomMarkerStays: a room's displayed marker is replaced in
// its place even when a receipt to one of its occupants (a private message
// from room/nick, whose bare JID is the room) was queued after it: group
// chat messages ask for no receipts, so that receipt answers no message
// the marker covers, and moving the marker behind it would only delay it.
func TestRecipientRoomMarkerStays(t *testing.T) {
	c := newTapClient(t, Config{})
	room := jid.MustParse("room@conf.example.org")
	newest := "g1"
	c.Observe(Observer{Room: room, Route: func(context.Context, Message) (*tracking.MessageTracker, error) { return nil, nil },
		Mark: func() string { id := newest; newest = ""; return id }})
	if !c.MarkDisplayed(room) {
		t.Fatal("the room's marker was not queued")
	}
	feedTap(t, c, nil, strings.NewReader(`<stream xmlns='jabber:client'><message from='room@conf.example.org/carol' id='p1' type='chat'><body>hi</body><request xmlns='urn:xmpp:receipts'/></message></stream>`))
	newest = "g2"
	if !c.MarkDisplayed(room) {
		t.Fatal("the room's second marker was not queued")
	}
	var got []string
	for _, a := range c.rcp.take(nil) {
		k := "r"
		if a.marker {
			k = "m"
		}
		got = append(got, a.to.String()+" "+a.ref+k)
	}
	if want := "room@conf.example.org g2m,room@conf.example.org/carol p1r"; strings.Join(got, ",") != want {
		t.Errorf("outbox %v, want %s", got, want)
	}
}

// TestRoomGoneNoPrivateMarker: once a room's observer is removed (what
// muc's Leave, or a kick, does), MarkDisplayed of the room finds nothing
// to mark: a private message from one of its occupants, remembered under
// the room's bare JID, is not marked as if the room were a one-to-one peer
// (before, a chat marker for it went to the room).
func TestRoomGoneNoPrivateMarker(t *testing.T) {
	c := newTapClient(t, Config{}) // nobody drains its outbox
	room := jid.MustParse("room@conf.example.org")
	remove := c.Observe(roomObserver(room, ""))
	feedTap(t, c, nil, strings.NewReader(`<stream xmlns='jabber:client'><message from='room@conf.example.org/carol' id='p1' type='chat'><body>psst</body><markable xmlns='urn:xmpp:chat-markers:0'/></message></stream>`))
	remove()
	if c.MarkDisplayed(room) {
		t.Error("MarkDisplayed of a room that is gone queued a marker")
	}
	if got := c.rcp.take(nil); len(got) != 0 {
		t.Errorf("queued %+v, want nothing", got)
	}
}

// TestGroupChatMarkNeverOneToOne: the room's own way to mark (what
// muc.Room.MarkDisplayed calls: MarkConversation of a group chat message of
// the room) never falls back to the one-to-one path. The order is the
// window left by a check of the room's state before the call: the observer
// is removed (Leave), then a private message from an occupant, sent before
// the room processed our leaving, is remembered under the room's bare JID
// (it has no muc#user <x/>), then the call runs. MarkDisplayed, which the
// room called before, queues a chat marker for that message to the room.
func TestGroupChatMarkNeverOneToOne(t *testing.T) {
	c := newTapClient(t, Config{}) // nobody drains its outbox
	room := jid.MustParse("room@conf.example.org")
	remove := c.Observe(roomObserver(room, "g1"))
	remove()
	feedTap(t, c, nil, strings.NewReader(`<stream xmlns='jabber:client'><message from='room@conf.example.org/carol' id='p1' type='chat'><body>psst</body><markable xmlns='urn:xmpp:chat-markers:0'/></message></stream>`))
	if c.MarkConversation(&Incoming{Type: xstanza.GroupChatMessage, Room: room}) {
		t.Error("MarkConversation of a group chat message of a room no observer takes over queued a marker")
	}
	if got := c.rcp.take(nil); len(got) != 0 {
		t.Errorf("queued %+v, want nothing", got)
	}
}

// TestGroupChatMarkQueuesRoomMarker: while the observer takes over the room,
// MarkConversation of a group chat message of the room queues its Mark as
// a group chat marker to the room.
func TestGroupChatMarkQueuesRoomMarker(t *testing.T) {
	c := newTapClient(t, Config{})
	room := jid.MustParse("room@conf.example.org")
	c.Observe(roomObserver(room, "g1"))
	if !c.MarkConversation(&Incoming{Type: xstanza.GroupChatMessage, Room: room}) {
		t.Fatal("MarkConversation queued nothing")
	}
	got := c.rcp.take(nil)
	if len(got) != 1 || !got[0].to.Equal(room) || got[0].typ != xstanza.GroupChatMessage || got[0].ref != "g1" || !got[0].marker {
		t.Errorf("queued %+v, want one group chat marker of g1 to the room", got)
	}
}

// roomObserver is an observer taking over room, as package muc's, whose
// Mark gives mark.
func roomObserver(room jid.JID, mark string) Observer {
	return Observer{
		Room:  room,
		Route: func(context.Context, Message) (*tracking.MessageTracker, error) { return nil, nil },
		Mark:  func() string { return mark },
	}
}

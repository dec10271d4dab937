package muc

import (
	"context"
	"encoding/xml"
	"slices"
	"strings"
	"testing"

	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack/tracking"
)

// presenceFrom hands a presence from the room, as the client would, to the
// room's observer.
func presenceFrom(t *testing.T, r *Room, raw string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	start := tok.(xml.StartElement)
	p, err := xstanza.NewPresence(start)
	if err != nil {
		t.Fatal(err)
	}
	r.presence(p, d)
}

func unavailable(nick, inner string) string {
	return `<presence xmlns='jabber:client' type='unavailable' from='` + roomJID + `/` + nick + `' to='alice@example.org/x'>` +
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='none'/>` + inner + `</x></presence>`
}

// TestRemovalSettles checks that leaving, a kick, a ban or the room's
// destruction settle the room's trackers: those without proof become
// Closed, those with proof keep their state; another
// occupant leaving changes nothing.
func TestRemovalSettles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(t *testing.T, r *Room)
	}{
		{"leave", func(t *testing.T, r *Room) { r.Leave(context.Background(), "") }},
		{"kick", func(t *testing.T, r *Room) {
			presenceFrom(t, r, unavailable("alice", `<status code='307'/><status code='110'/>`))
		}},
		{"ban", func(t *testing.T, r *Room) {
			presenceFrom(t, r, unavailable("alice", `<status code='301'/><status code='110'/>`))
		}},
		{"destroyed", func(t *testing.T, r *Room) {
			presenceFrom(t, r, unavailable("alice", `<destroy jid='new@conference.example.org'><reason>moved</reason></destroy><status code='110'/>`))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := scriptedRoom(true, false)
			open := r.sent("m1", "a")
			proved := r.sent("m2", "b")
			feed(t, r, groupchat("alice", "m2", `<body>b</body>`))
			presenceFrom(t, r, unavailable("bob", ``))
			select {
			case <-r.Done():
				t.Fatal("another occupant leaving ended the room")
			default:
			}
			tc.remove(t, r)
			select {
			case <-r.Done():
			default:
				t.Fatal("room not done")
			}
			if open.State() != tracking.Closed || proved.State() != tracking.DeliveredToRecipient || !proved.Settled() {
				t.Fatalf("states %v, %v (settled %v)", open.State(), proved.State(), proved.Settled())
			}
		})
	}
}

// TestOurNickChanges covers row 19's "after our nick changed": a nick
// change (status 303) does not count as leaving, and from then on only the
// new nick's reflections are ours; a nick the room assigns when we join
// (status 210 on our self-presence) is followed the same way.
func TestOurNickChanges(t *testing.T) {
	r := scriptedRoom(false, false)
	m1 := r.sent("m1", "a")
	presenceFrom(t, r, `<presence xmlns='jabber:client' type='unavailable' from='`+roomJID+`/alice' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant' nick='alice2'/><status code='303'/><status code='110'/></x></presence>`)
	presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/alice2' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>`)
	select {
	case <-r.Done():
		t.Fatal("a nick change ended the room")
	default:
	}
	if feed(t, r, groupchat("alice", "m1", `<body>a</body>`)) || m1.State() != tracking.InTransit {
		t.Fatalf("the old nick's copy counted: %v", m1.State())
	}
	if !feed(t, r, groupchat("alice2", "m1", `<body>a</body>`)) || m1.State() != tracking.DeliveredToRecipient {
		t.Fatalf("the new nick's reflection: %v", m1.State())
	}
	if got := r.Addr().Resourcepart(); got != "alice2" {
		t.Fatalf("Addr nick %q", got)
	}
	// Joining again, the room assigns us a nick (status 210 with our
	// self-presence, which answers the join).
	m2 := r.sent("m2", "b")
	answer := make(chan error, 1)
	r.joinWait = answer
	presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/Alice (2)' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/><status code='210'/></x></presence>`)
	if err := <-answer; err != nil {
		t.Fatalf("join: %v", err)
	}
	if !feed(t, r, groupchat("Alice (2)", "m2", `<body>b</body>`)) || m2.State() != tracking.DeliveredToRecipient {
		t.Fatalf("reflection under the assigned nick: %v", m2.State())
	}
}

// TestNewSessionForgetsOccupants: after a connection that could not be
// resumed, who was in the room is stale until the rejoin announces
// everybody again.
func TestNewSessionForgetsOccupants(t *testing.T) {
	r := scriptedRoom(false, false)
	joined := make(chan struct{})
	r.joinAgain = func(context.Context) error { close(joined); return nil }
	presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/bob' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/></x></presence>`)
	if len(r.Occupants()) != 1 {
		t.Fatalf("occupants %+v", r.Occupants())
	}
	r.connected(true)
	if len(r.Occupants()) != 1 {
		t.Fatal("a resumed stream forgot the occupants")
	}
	r.connected(false)
	<-joined
	if occ := r.Occupants(); len(occ) != 0 {
		t.Fatalf("stale occupants after a new session: %+v", occ)
	}
	r.Leave(t.Context(), "")
}

// TestStaleDepartureDuringJoin: joining right after a Leave of the same
// client, the room's answer to that Leave (our unavailable presence) may
// come after the new join presence went out: it does not end the new room.
func TestStaleDepartureDuringJoin(t *testing.T) {
	r := scriptedRoom(false, false)
	r.in = false // joining
	answer := make(chan error, 1)
	r.joinWait = answer
	presenceFrom(t, r, unavailable("alice", `<status code='110'/>`))
	select {
	case <-r.Done():
		t.Fatal("a stale departure ended the room")
	default:
	}
	presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/alice' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x></presence>`)
	if err := <-answer; err != nil {
		t.Fatalf("join: %v", err)
	}
	presenceFrom(t, r, unavailable("alice", `<status code='307'/><status code='110'/>`))
	select {
	case <-r.Done():
	default:
		t.Fatal("a kick after the join did not end the room")
	}
}

// nested110 is a status code 110 ("this presence is yours") that another
// occupant nests in an extension element of its own presence. Rooms strip
// a client's top-level muc#user <x/> and relay its other children as they
// are; the room's own <x/> follows, without 110.
const nested110 = `<evil xmlns='urn:example:evil'><x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></evil>`

// TestNestedStatusIsNotOurs (review hunt-corr 1): status codes, items and
// occupant-ids count only where XEP-0045 and XEP-0421 put them (the room's
// top-level muc#user <x/>, the presence's own children), so that another
// occupant cannot nest a 110 in its presence and pass for us: take our
// nick and occupant-id, have its messages prove ours, end our room by
// leaving.
func TestNestedStatusIsNotOurs(t *testing.T) {
	t.Run("departure", func(t *testing.T) {
		r := scriptedRoom(true, true)
		m := r.sent("m1", "a")
		presenceFrom(t, r, `<presence xmlns='jabber:client' type='unavailable' from='`+roomJID+`/mallory' to='alice@example.org/x'>`+
			nested110+`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='none'/></x></presence>`)
		select {
		case <-r.Done():
			t.Fatal("another occupant's departure ended our room")
		default:
		}
		if m.State() != tracking.InTransit {
			t.Fatalf("another occupant's departure moved our message to %v", m.State())
		}
	})
	t.Run("takes_our_nick", func(t *testing.T) {
		r := scriptedRoom(true, true)
		presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/mallory' to='alice@example.org/x'>`+
			nested110+`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/></x>`+occupantID("occ-mallory")+`</presence>`)
		if got := r.Addr().Resourcepart(); got != "alice" {
			t.Fatalf("our nick is now %q", got)
		}
		if got := who(r.Occupants()); !slices.Equal(got, []string{"mallory/occ-mallory"}) {
			t.Fatalf("occupants %v", got)
		}
		m := r.sent("m1", "a")
		feed(t, r, groupchat("alice", "m1", `<body>a</body>`+originID("m1")+occupantID("occ-alice")+sidOf("s-1", roomJID)))
		if m.State() != tracking.DeliveredToRecipient {
			t.Fatalf("our own reflection did not prove our message: %v", m.State())
		}
		m2 := r.sent("m2", "b")
		feed(t, r, groupchat("mallory", "x1", `<body>b</body>`+occupantID("occ-mallory")))
		if m2.State() != tracking.InTransit {
			t.Fatalf("another occupant's message proved ours: %v", m2.State())
		}
		presenceFrom(t, r, unavailable("mallory", ``))
		select {
		case <-r.Done():
			t.Fatal("another occupant's plain departure ended our room")
		default:
		}
		if m2.State() != tracking.InTransit {
			t.Fatalf("another occupant's departure moved our message to %v", m2.State())
		}
	})
	t.Run("nested_item_and_occupant_id", func(t *testing.T) {
		// The room's item and occupant-id come first; mallory's nested ones
		// after them name somebody else.
		r := scriptedRoom(true, true)
		presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/mallory' to='alice@example.org/x'>`+
			`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='visitor'/></x>`+occupantID("occ-mallory")+
			`<evil xmlns='urn:example:evil'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator' jid='boss@example.org/desk'/></x>`+
			occupantID("occ-boss")+`</evil></presence>`)
		occ := r.Occupants()
		if got := who(occ); !slices.Equal(got, []string{"mallory/occ-mallory"}) || occ[0].Role != "visitor" {
			t.Fatalf("occupants %v %+v", got, occ)
		}
	})
	t.Run("two_top_level_x", func(t *testing.T) {
		// A room that relays a client's own <x/>: which one is the room's
		// cannot be told, so neither counts.
		r := scriptedRoom(true, true)
		r.in = false
		answer := make(chan error, 1)
		r.joinWait = answer
		presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/mallory' to='alice@example.org/x'>`+
			`<x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x>`+
			`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/></x></presence>`)
		select {
		case err := <-answer:
			t.Fatalf("another occupant's presence answered our join: %v", err)
		default:
		}
		if got := r.Addr().Resourcepart(); got != "alice" {
			t.Fatalf("our nick is now %q", got)
		}
	})
}

// TestStatus110FromAnotherNick (review hunt-corr 1): once we are in, our
// presence is the one from our nick; a status 110 from another nick is
// believed only in the answer to a join of ours (a nick the room assigned,
// status 210), since afterwards our nick changes only by a 303 from our
// current nick. A room that relayed an occupant's own <x/> would otherwise
// let it pass for us.
func TestStatus110FromAnotherNick(t *testing.T) {
	r := scriptedRoom(true, true)
	m := r.sent("m1", "a")
	presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/mallory' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/></x>`+occupantID("occ-mallory")+`</presence>`)
	if got := r.Addr().Resourcepart(); got != "alice" {
		t.Fatalf("our nick is now %q", got)
	}
	if got := who(r.Occupants()); !slices.Equal(got, []string{"mallory/occ-mallory"}) {
		t.Fatalf("occupants %v", got)
	}
	feed(t, r, groupchat("mallory", "x1", `<body>a</body>`+occupantID("occ-mallory")))
	if m.State() != tracking.InTransit {
		t.Fatalf("another occupant's message proved ours: %v", m.State())
	}
	presenceFrom(t, r, unavailable("mallory", `<status code='110'/>`))
	select {
	case <-r.Done():
		t.Fatal("another occupant's departure ended our room")
	default:
	}
	if m.State() != tracking.InTransit {
		t.Fatalf("another occupant's departure moved our message to %v", m.State())
	}
	// Our own reflection still proves it.
	feed(t, r, groupchat("alice", "m1", `<body>a</body>`+originID("m1")+occupantID("occ-alice")))
	if m.State() != tracking.DeliveredToRecipient {
		t.Fatalf("our reflection: %v", m.State())
	}
}

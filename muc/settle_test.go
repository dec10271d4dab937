package muc

import (
	"context"
	"encoding/xml"
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
// new nick's reflections are ours; a nick the room assigns (status 210 on
// our self-presence) is followed the same way.
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
	// The room renames us (status 210 with our self-presence).
	m2 := r.sent("m2", "b")
	presenceFrom(t, r, `<presence xmlns='jabber:client' from='`+roomJID+`/Alice (2)' to='alice@example.org/x'>`+
		`<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/><status code='110'/><status code='210'/></x></presence>`)
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

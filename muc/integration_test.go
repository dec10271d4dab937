package muc_test

import (
	"context"
	"encoding/xml"
	"errors"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func dial(t *testing.T, srv *testserver.Server, local string, cfg xmpptrack.Config) *xmpptrack.Client {
	t.Helper()
	cfg.Addr = srv.Addr()
	cfg.TLSConfig = srv.TLSConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := xmpptrack.Dial(ctx, srv.JID(local), srv.Password(local), &cfg)
	if err != nil {
		t.Fatalf("Dial %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func withNick(room jid.JID, nick string) jid.JID {
	return jid.MustParse(room.String() + "/" + nick)
}

func join(t *testing.T, ctx context.Context, c *xmpptrack.Client, room jid.JID) *muc.Room {
	t.Helper()
	r, err := muc.Join(ctx, c, room, nil)
	if err != nil {
		t.Fatalf("Join %s: %v", room, err)
	}
	return r
}

// groupchats signals each group chat message with a body that a handler sees.
func groupchats(ch chan<- string) xmpp.Handler {
	return xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		msg, err := xstanza.NewMessage(*start)
		if err != nil || msg.Type != xstanza.GroupChatMessage {
			return nil
		}
		ev, err := stanza.ParseMessage(*start, t)
		if err == nil && ev.Body != "" {
			select {
			case ch <- ev.Body:
			default:
			}
		}
		return nil
	})
}

func forEachServer(t *testing.T, accounts []string, f func(t *testing.T, srv *testserver.Server)) {
	for _, kind := range testserver.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			f(t, testserver.Start(t, kind, testserver.Options{Accounts: accounts}))
		})
	}
}

func TestIntegrationRoomReflectionAndMarker(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("ops@" + srv.MUCDomain())
		aliceSees := make(chan string, 16)
		bobSees := make(chan string, 16)
		alice := dial(t, srv, "alice", xmpptrack.Config{Handler: groupchats(aliceSees)})
		bob := dial(t, srv, "bob", xmpptrack.Config{Handler: groupchats(bobSees)})
		ra := join(t, ctx, alice, withNick(room, "alice"))
		rb := join(t, ctx, bob, withNick(room, "bob"))

		tr, err := ra.Send(ctx, "deploy finished")
		if err != nil {
			t.Fatal(err)
		}
		if st, err := tr.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatalf("reflection: %v, %v\n%s", st, err, srv.Logs())
		}
		if resp := tr.Response(); resp == nil || resp.Body != "deploy finished" || resp.From.Resourcepart() != "alice" {
			t.Fatalf("response %+v", resp)
		}
		select {
		case body := <-aliceSees:
			t.Fatalf("the reflection %q reached the handler", body)
		default:
		}

		select {
		case body := <-bobSees:
			if body != "deploy finished" {
				t.Fatalf("bob saw %q", body)
			}
		case <-ctx.Done():
			t.Fatal("bob never saw the message")
		}
		if ok, err := rb.MarkDisplayed(ctx); !ok || err != nil {
			t.Fatalf("MarkDisplayed: %v, %v", ok, err)
		}
		if st, err := tr.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("marker: %v, %v", st, err)
		}
		seen := ra.SeenBy(tr)
		if len(seen) != 1 || seen[0].Nick != "bob" {
			t.Fatalf("seen by %+v", seen)
		}
		if srv.Kind() == testserver.Prosody && seen[0].OccupantID == "" {
			t.Fatalf("Prosody announces occupant-ids, got none: %+v", seen)
		}

		if err := ra.Leave(ctx, ""); err != nil {
			t.Fatal(err)
		}
		<-ra.Done()
		if _, err := ra.Send(ctx, "too late"); !errors.Is(err, muc.ErrNotJoined) {
			t.Fatalf("Send after Leave: %v", err)
		}
	})
}

func TestIntegrationRoomErrorWhenNotJoined(t *testing.T) {
	forEachServer(t, []string{"alice", "carol"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("closed@" + srv.MUCDomain())
		alice := dial(t, srv, "alice", xmpptrack.Config{})
		join(t, ctx, alice, withNick(room, "alice")) // the room exists
		carol := dial(t, srv, "carol", xmpptrack.Config{})
		tr, err := carol.Send(ctx, xmpptrack.Message{To: room, Type: xstanza.GroupChatMessage, Body: "let me in"})
		if err != nil {
			t.Fatal(err)
		}
		st, err := tr.Wait(ctx, tracking.DeliveredToRecipient)
		if st != tracking.Error || !errors.Is(err, tracking.ErrFailed) {
			t.Fatalf("Wait: %v, %v", st, err)
		}
		var se xstanza.Error
		if !errors.As(err, &se) || se.Condition == "" {
			t.Fatalf("no stanza error in %v", err)
		}
		t.Logf("%s answers a non-occupant with %s", srv.Kind(), se.Condition)
	})
}

func TestIntegrationRoomHistoryReplay(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("history@" + srv.MUCDomain() + "/alice")
		seen := make(chan string, 16)
		alice := dial(t, srv, "alice", xmpptrack.Config{Handler: groupchats(seen)})
		r := join(t, ctx, alice, room)
		// bob stays, so the temporary room and its history outlive alice's visit.
		join(t, ctx, dial(t, srv, "bob", xmpptrack.Config{}), jid.MustParse("history@"+srv.MUCDomain()+"/bob"))
		var trs []*tracking.MessageTracker
		for _, body := range []string{"one", "two"} {
			tr, err := r.Send(ctx, body)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tr.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
				t.Fatal(err)
			}
			trs = append(trs, tr)
		}
		if err := r.Leave(ctx, ""); err != nil {
			t.Fatal(err)
		}
		// Rejoining replays our own messages as history: they are nobody's
		// reflection any more, reach the handler, and change nothing.
		r2 := join(t, ctx, alice, room)
		for _, want := range []string{"one", "two"} {
			select {
			case got := <-seen:
				if got != want {
					t.Fatalf("history %q, want %q", got, want)
				}
			case <-ctx.Done():
				t.Fatalf("no history replay of %q", want)
			}
		}
		for _, tr := range trs {
			if tr.State() != tracking.DeliveredToRecipient || !tr.Settled() {
				t.Fatalf("%s: %v settled=%v", tr.ID(), tr.State(), tr.Settled())
			}
		}
		tr, err := r2.Send(ctx, "three")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIntegrationRoomMarkerFromSlixmpp has an occupant nobody here wrote
// (slixmpp) mark our group-chat message displayed.
func TestIntegrationRoomMarkerFromSlixmpp(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("slix@" + srv.MUCDomain())
		peer := interop.StartSlixmpp(t, interop.Options{
			Addr: srv.Addr(), JID: srv.JID("bob").String(), Password: srv.Password("bob"),
			CertPEM: srv.CertPEM(), Room: room.String(), Nick: "slixbob", RoomMarkers: true,
		})
		alice := dial(t, srv, "alice", xmpptrack.Config{})
		r := join(t, ctx, alice, withNick(room, "alice"))
		tr, err := r.Send(ctx, "tests passed")
		if err != nil {
			t.Fatal(err)
		}
		if st, err := tr.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("Wait: %v, %v\npeer:\n%s", st, err, peer.Logs())
		}
		seen := r.SeenBy(tr)
		if len(seen) != 1 || seen[0].Nick != "slixbob" {
			t.Fatalf("seen by %+v, want the nick slixbob", seen)
		}
	})
}

// TestIntegrationRoomJoinAgainWhileJoined checks what row 36's rejoin does
// when we were in fact still an occupant: the room accepts the join
// presence, we stay in, and tracking goes on.
func TestIntegrationRoomJoinAgainWhileJoined(t *testing.T) {
	forEachServer(t, []string{"alice"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		seen := make(chan string, 16)
		alice := dial(t, srv, "alice", xmpptrack.Config{Handler: groupchats(seen)})
		r := join(t, ctx, alice, jid.MustParse("ghost@"+srv.MUCDomain()+"/alice"))
		for i, body := range []string{"before", "after"} {
			if i == 1 {
				if err := muc.JoinAgain(ctx, r); err != nil {
					t.Fatalf("join again: %v", err)
				}
			}
			tr, err := r.Send(ctx, body)
			if err != nil {
				t.Fatal(err)
			}
			if st, err := tr.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
				t.Fatalf("%s: %v, %v", body, st, err)
			}
		}
		select {
		case <-r.Done():
			t.Fatal("the room counts as left")
		default:
		}
		// The server may replay history on the second join (Prosody does):
		// like any history, it reaches the handler and changes nothing. The
		// reflection of "after" is consumed as usual.
		for len(seen) > 0 {
			if got := <-seen; got != "before" {
				t.Errorf("the handler got %q", got)
			}
		}
	})
}

// TestIntegrationRoomSpoofedReflection has another occupant post messages
// that copy ours (same id, same XEP-0359 origin-id, same body) right
// before and after ours: only our own reflection counts, whatever order the
// room delivers them in, and the copies reach the handler as anybody's
// messages do.
func TestIntegrationRoomSpoofedReflection(t *testing.T) {
	forEachServer(t, []string{"alice", "mallory"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("spoof@" + srv.MUCDomain())
		aliceSees := make(chan string, 16)
		alice := dial(t, srv, "alice", xmpptrack.Config{Handler: groupchats(aliceSees)})
		mallory := dial(t, srv, "mallory", xmpptrack.Config{})
		ra := join(t, ctx, alice, withNick(room, "alice"))
		join(t, ctx, mallory, withNick(room, "mallory"))
		const id = "spoofed-id-1"
		copyOf := func() {
			s, err := mallory.Session(ctx)
			if err != nil {
				t.Fatal(err)
			}
			msg := xstanza.Message{To: room, Type: xstanza.GroupChatMessage, ID: id}
			body := xmlstream.Wrap(xmlstream.Token(xml.CharData("deploy")), xml.StartElement{Name: xml.Name{Local: "body"}})
			if err := s.Send(ctx, msg.Wrap(xmlstream.MultiReader(body, stanza.OriginID{ID: id}.TokenReader()))); err != nil {
				t.Fatal(err)
			}
		}
		copyOf()
		tr, err := ra.SendMessage(ctx, xmpptrack.Message{ID: id, Body: "deploy"})
		if err != nil {
			t.Fatal(err)
		}
		copyOf()
		if st, err := tr.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatalf("reflection: %v, %v", st, err)
		}
		if resp := tr.Response(); resp == nil || resp.From.Resourcepart() != "alice" {
			t.Fatalf("response %+v: not our own reflection", resp)
		}
		for range 2 {
			select {
			case body := <-aliceSees:
				if body != "deploy" {
					t.Fatalf("the handler got %q", body)
				}
			case <-ctx.Done():
				t.Fatal("a copy never reached the handler")
			}
		}
	})
}

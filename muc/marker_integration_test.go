package muc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationRoomMarkerIsClientAnswer: Room.MarkDisplayed is the
// client's MarkDisplayed of the room: with Config.NoMarkers nothing is
// queued (it used to be written regardless), an ended ctx queues nothing,
// a marker queued by one client reaches the sender's tracker, and once
// the room was left nothing is queued. (That the marker then takes its
// place among the client's answers, and is written again after a failed
// write, is the client's answer path, tested in package xmpptrack.)
func TestIntegrationRoomMarkerIsClientAnswer(t *testing.T) {
	forEachServer(t, []string{"alice", "bob", "carol"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("marks@" + srv.MUCDomain())
		bobSees := make(chan string, 16)
		carolSees := make(chan string, 16)
		alice := dial(t, srv, "alice", xmpptrack.Config{})
		bob := dial(t, srv, "bob", xmpptrack.Config{Handler: groupchats(bobSees)})
		carol := dial(t, srv, "carol", xmpptrack.Config{Handler: groupchats(carolSees), NoMarkers: true})
		ra := join(t, ctx, alice, withNick(room, "alice"))
		rb := join(t, ctx, bob, withNick(room, "bob"))
		rc := join(t, ctx, carol, withNick(room, "carol"))

		tr, err := ra.Send(ctx, "release notes")
		if err != nil {
			t.Fatal(err)
		}
		for who, ch := range map[string]chan string{"bob": bobSees, "carol": carolSees} {
			select {
			case <-ch:
			case <-ctx.Done():
				t.Fatalf("%s never saw the message", who)
			}
		}
		if ok, err := rc.MarkDisplayed(ctx); ok || err != nil {
			t.Fatalf("MarkDisplayed with NoMarkers: %v, %v; want false, nil", ok, err)
		}
		done, stop := context.WithCancel(ctx)
		stop()
		if ok, err := rb.MarkDisplayed(done); ok || !errors.Is(err, context.Canceled) {
			t.Fatalf("MarkDisplayed with an ended ctx: %v, %v; want false, context.Canceled", ok, err)
		}
		if ok, err := rb.MarkDisplayed(ctx); !ok || err != nil {
			t.Fatalf("MarkDisplayed: %v, %v", ok, err)
		}
		if ok, _ := rb.MarkDisplayed(ctx); ok {
			t.Fatal("MarkDisplayed queued a second marker with nothing new to mark")
		}
		if st, err := tr.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("marker: %v, %v", st, err)
		}
		if seen := ra.SeenBy(tr); len(seen) != 1 || seen[0].Nick != "bob" {
			t.Fatalf("seen by %+v, want bob alone", seen)
		}
		if _, err := ra.Send(ctx, "one more"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-bobSees:
		case <-ctx.Done():
			t.Fatal("bob never saw the second message")
		}
		if err := rb.Leave(ctx, ""); err != nil {
			t.Fatal(err)
		}
		if ok, err := rb.MarkDisplayed(ctx); ok || err != nil {
			t.Fatalf("MarkDisplayed after Leave: %v, %v; want false, nil", ok, err)
		}
	})
}

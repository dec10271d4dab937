package muc_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/muc"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationRoomOnMessage: room messages reach Config.OnMessage with
// the room and the sender's nick, our own reflections never do, and the
// history a room replays at join comes marked as delayed, with its stamp.
func TestIntegrationRoomOnMessage(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("inbox@" + srv.MUCDomain())
		got := make(chan *xmpptrack.Incoming, 64)
		alice := dial(t, srv, "alice", xmpptrack.Config{OnMessage: func(_ *xmpptrack.Client, m *xmpptrack.Incoming) {
			if m.Room.Equal(room) {
				got <- m
			}
		}})
		bob := dial(t, srv, "bob", xmpptrack.Config{})
		rb := join(t, ctx, bob, withNick(room, "bob"))
		before := time.Now()
		tr, err := rb.Send(ctx, "said before alice came")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatal(err)
		}
		next := func() *xmpptrack.Incoming {
			t.Helper()
			select {
			case m := <-got:
				return m
			case <-ctx.Done():
				t.Fatal("no message reached OnMessage")
				return nil
			}
		}

		ra := join(t, ctx, alice, withNick(room, "alice"))
		h := next()
		if h.Body != "said before alice came" || h.Nick != "bob" || h.Delay.IsZero() {
			t.Fatalf("history: %+v", h)
		}
		if h.Delay.Before(before.Add(-time.Minute)) || h.Delay.After(time.Now().Add(time.Minute)) {
			t.Fatalf("history stamp %v, sent at %v", h.Delay, before)
		}

		mine, err := ra.Send(ctx, "alice here")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mine.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatal(err)
		}
		if _, err := rb.Send(ctx, "welcome"); err != nil {
			t.Fatal(err)
		}
		// Room messages arrive in order: our reflection came before
		// "welcome", so had it reached OnMessage it would be next.
		m := next()
		if m.Body != "welcome" || m.Nick != "bob" || !m.Delay.IsZero() || m.Type != "groupchat" {
			t.Fatalf("live message: %+v", m)
		}
	})
}

// TestIntegrationRoomLeaveFromCallback: OnMessage may call Room.Leave,
// even while the client's callbacks are so far behind that the reader
// waits for them (bob floods the room): Leave returns once its presence is
// written, it does not wait for the room's answer that the reader would
// have to read.
func TestIntegrationRoomLeaveFromCallback(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		room := jid.MustParse("flood@" + srv.MUCDomain())
		rooms := make(chan *muc.Room, 1)
		left := make(chan error, 1)
		var once sync.Once
		alice := dial(t, srv, "alice", xmpptrack.Config{OnMessage: func(_ *xmpptrack.Client, m *xmpptrack.Incoming) {
			once.Do(func() {
				r := <-rooms
				left <- r.Leave(context.Background(), "bye")
			})
		}})
		rooms <- join(t, ctx, alice, withNick(room, "alice"))
		rb := join(t, ctx, dial(t, srv, "bob", xmpptrack.Config{}), withNick(room, "bob"))
		for i := range 400 {
			if _, err := rb.Send(ctx, "flood "+strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-left:
			if err != nil {
				t.Fatalf("Leave: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("Leave from OnMessage never returned")
		}
	})
}

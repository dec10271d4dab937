package muc_test

import (
	"context"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationRoomBotPattern runs the README's bot pattern in a room: a
// bot that answers every message it reads with Client.Send(m.Reply(...)) and
// marks it with Client.MarkConversation(m) answers another occupant's
// message exactly once (its reply's reflection never reaches OnMessage),
// the reply is proven by the room's reflection, and the marker reaches the
// sender.
func TestIntegrationRoomBotPattern(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		room := jid.MustParse("botroom@" + srv.MUCDomain())
		type answered struct {
			in     *xmpptrack.Incoming
			t      *tracking.MessageTracker
			err    error
			marked bool
		}
		got := make(chan answered, 64)
		alice := dial(t, srv, "alice", xmpptrack.Config{OnMessage: func(c *xmpptrack.Client, m *xmpptrack.Incoming) {
			if !m.Room.Equal(room) || !m.Delay.IsZero() {
				return
			}
			tr, err := c.Send(ctx, m.Reply("you said: "+m.Body))
			got <- answered{in: m, t: tr, err: err, marked: c.MarkConversation(m)}
		}})
		bob := dial(t, srv, "bob", xmpptrack.Config{})
		join(t, ctx, alice, withNick(room, "bot"))
		rb := join(t, ctx, bob, withNick(room, "bob"))

		next := func() answered {
			t.Helper()
			select {
			case a := <-got:
				return a
			case <-ctx.Done():
				t.Fatal("OnMessage was not called")
				return answered{}
			}
		}
		hello, err := rb.Send(ctx, "hello bot")
		if err != nil {
			t.Fatal(err)
		}
		a := next()
		if a.err != nil || a.in.Body != "hello bot" || a.in.Nick != "bob" {
			t.Fatalf("first call: %+v", a)
		}
		if st, err := a.t.Wait(ctx, tracking.DeliveredToRecipient); err != nil {
			t.Fatalf("the reply stopped at %s: %v", st, err)
		}
		if r := a.t.Response(); r == nil || r.Body != "you said: hello bot" {
			t.Fatalf("the reply's proof: %+v", r)
		}
		if !a.marked {
			t.Fatal("MarkConversation of a room message queued no marker")
		}
		if st, err := hello.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("bob's message stopped at %s: %v", st, err)
		}
		// Room messages arrive in order: the reply's reflection came
		// before "bye", so had it reached OnMessage it would be next.
		if _, err := rb.Send(ctx, "bye"); err != nil {
			t.Fatal(err)
		}
		if a := next(); a.in.Body != "bye" {
			t.Fatalf("OnMessage got %q after the reply, want bob's next message", a.in.Body)
		}
	})
}

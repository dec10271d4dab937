package xmpptrack

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/faultproxy"
	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationKilledRecipientMarkers: bob (slixmpp, markers on) is
// connected through the fault proxy; the proxy freezes his connection (the
// server sees no FIN and keeps writing into it) and his process is killed
// with SIGKILL. alice sends messages that the server acknowledges into the
// dead session. bob comes back on a new connection and receives, receipts
// and displays a later message. No message bob never received may be
// DELIVERED_TO_RECIPIENT or SEEN_BY_RECIPIENT: the marker for the later
// message proves nothing about the lost ones.
func TestIntegrationKilledRecipientMarkers(t *testing.T) {
	if err := interop.Available(interop.Slixmpp); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		proxy, err := faultproxy.Listen(faultproxy.Config{Target: srv.Addr()})
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		opts := interop.Options{Addr: proxy.Addr(), JID: srv.JID("bob").String(), Password: srv.Password("bob"), CertPEM: srv.CertPEM()}
		bob1, err := interop.Launch(ctx, interop.Slixmpp, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer bob1.Stop()
		alice := dialTest(t, srv, "alice", Config{Window: time.Hour})
		send := func(body string) *tracking.MessageTracker {
			t.Helper()
			tr, err := alice.Send(ctx, Message{To: srv.JID("bob"), Body: body})
			if err != nil {
				t.Fatal(err)
			}
			return tr
		}
		first := send("before the crash")
		if st, err := first.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("first message: %v, %v\n%s", st, err, bob1.Logs())
		}

		if proxy.Freeze() != 1 {
			t.Fatal("bob's connection was not frozen")
		}
		if err := bob1.Kill(); err != nil {
			t.Fatal(err)
		}
		<-bob1.Done()
		const lostN = 10
		var during []*tracking.MessageTracker
		for i := range lostN {
			tr := send(fmt.Sprint("while bob is dead ", i))
			if st, err := tr.Wait(ctx, tracking.DeliveredToServer); err != nil {
				t.Fatalf("message %d during the crash: %v, %v", i, st, err)
			}
			during = append(during, tr)
		}

		opts.Addr = srv.Addr()
		bob2, err := interop.Launch(ctx, interop.Slixmpp, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer bob2.Stop()
		later := send("after the restart")
		if st, err := later.Wait(ctx, tracking.SeenByRecipient); err != nil {
			t.Fatalf("later message: %v, %v\n%s", st, err, bob2.Logs())
		}

		received := map[string]bool{}
		for _, p := range []*interop.Peer{bob1, bob2} {
			for _, ev := range p.Events() {
				if ev.Kind == interop.EventMessage {
					received[ev.ID] = true
				}
			}
		}
		lost := 0
		for i, tr := range during {
			st := tr.State()
			if !received[tr.ID()] {
				lost++
				if st == tracking.DeliveredToRecipient || st == tracking.SeenByRecipient {
					t.Errorf("message %d (%s): %v, but bob never received it", i, tr.ID(), st)
				}
			}
		}
		t.Logf("%d of %d messages sent while bob was dead never reached him; the marker for the later message left them alone", lost, lostN)
	})
}

package xmpptrack

import (
	"context"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/interop"
	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationInterop sends tracked messages to recipients nobody on
// this project wrote: slixmpp (its receipts and markers plugins answering)
// and aioxmpp (receipts and markers built with its stanza classes), on both
// servers. Each message must be acknowledged by the server and walk to
// SEEN_BY_RECIPIENT through DELIVERED_TO_RECIPIENT.
func TestIntegrationInterop(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		for _, kind := range []interop.Kind{interop.Slixmpp, interop.Aioxmpp} {
			t.Run(string(kind), func(t *testing.T) {
				opts := interop.Options{
					Addr:     srv.Addr(),
					JID:      srv.JID("bob").String(),
					Password: srv.Password("bob"),
					CertPEM:  srv.CertPEM(),
				}
				var peer *interop.Peer
				if kind == interop.Slixmpp {
					peer = interop.StartSlixmpp(t, opts)
				} else {
					peer = interop.StartAioxmpp(t, opts)
				}
				var log stateLog
				acked := make(chan string, 16)
				alice := dialTest(t, srv, "alice", Config{
					OnStateChange:    log.hook,
					StreamManagement: sm.Config{OnAcked: func(s sm.Stanza) { acked <- s.ID }},
				})
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				tr, err := alice.Send(ctx, Message{To: srv.JID("bob"), Body: "hello from Go"})
				if err != nil {
					t.Fatal(err)
				}
				if st, err := tr.Wait(ctx, tracking.SeenByRecipient); err != nil {
					t.Fatalf("Wait: %v, %v\npeer:\n%s", st, err, peer.Logs())
				}
				got := waitLog(ctx, &log, tr.ID(), tracking.SeenByRecipient)
				if !contains(got, tracking.DeliveredToRecipient) {
					t.Fatalf("no DELIVERED_TO_RECIPIENT before SEEN_BY_RECIPIENT: %v", got)
				}
				if resp := tr.Response(); resp == nil || resp.From.Bare().String() != srv.JID("bob").String() {
					t.Fatalf("marker response %+v", resp)
				}
				if ev, err := peer.WaitMessage(ctx, 1); err != nil || ev.ID != tr.ID() || ev.Body != "hello from Go" {
					t.Fatalf("peer got %+v, %v", ev, err)
				}
				// The server acknowledged it too: DELIVERED_TO_SERVER was
				// reached, or skipped only because the receipt came first.
				for id := ""; id != tr.ID(); {
					select {
					case id = <-acked:
					case <-ctx.Done():
						t.Fatalf("the server never acknowledged the message; states %v", got)
					}
				}
			})
		}
	})
}

func contains(states []tracking.MessageState, s tracking.MessageState) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}

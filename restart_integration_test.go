package xmpptrack

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/testkit/testserver"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestIntegrationStoreReceiptAtLogin: a receipt that the server kept
// offline while no process ran reaches the restarted client as soon as its
// initial presence goes out; the re-loaded tracker must be registered by
// then, or the receipt is dropped as an unknown id.
func TestIntegrationStoreReceiptAtLogin(t *testing.T) {
	forEachServer(t, []string{"alice", "bob"}, func(t *testing.T, srv *testserver.Server) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		path := filepath.Join(t.TempDir(), "track.db")
		alice1 := dialTest(t, srv, "alice", Config{Store: openStorePath(t, path)})
		tr, err := alice1.Send(ctx, Message{To: srv.JID("bob"), Body: "while you were away"})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := tr.Wait(ctx, tracking.DeliveredToServer); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
		id := tr.ID()
		alice1.Close()

		// bob answers with a receipt while alice is away: the server keeps
		// it offline (its ack says it has it).
		bob := dialTest(t, srv, "bob", Config{NoReceipts: true})
		rt, err := bob.Send(ctx, Message{To: srv.JID("alice"), NoReceipt: true, NoMarkable: true,
			Payload: stanza.Receipt{ID: id}.TokenReader()})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := rt.Wait(ctx, tracking.DeliveredToServer); err != nil {
			t.Fatalf("the receipt: %s: %v", st, err)
		}

		var log stateLog
		alice2 := dialTest(t, srv, "alice", Config{Store: openStorePath(t, path), OnStateChange: log.hook})
		if got := waitLog(ctx, &log, id, tracking.DeliveredToRecipient); len(got) == 0 || got[len(got)-1] != tracking.DeliveredToRecipient {
			t.Fatalf("after the restart, %s went through %v; want the stored receipt to deliver it", id, got)
		}
		s, err := alice2.Status(ctx, id)
		if err != nil || s.State != tracking.DeliveredToRecipient {
			t.Fatalf("stored status: %+v, %v", s, err)
		}
	})
}

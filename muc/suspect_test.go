package muc

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"

	"github.com/xmpptrack/xmpptrack/stanza"
)

// errorFromRoom builds the room's error reply to our message id.
func errorFromRoom(id, condition string) string {
	return `<message xmlns='jabber:client' type='error' from='` + roomJID + `' to='alice@example.org/x' id='` + id + `'>` +
		`<error type='cancel'><` + condition + ` xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`
}

// TestBadInputMUCRow36 covers row 36 of protocol-brief.md §10: an error for
// one of our room messages that suggests a ghost membership makes the room
// join again and tells the application, once per rejoin; other errors, and
// errors for ids we did not send, do neither.
func TestBadInputMUCRow36(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := scriptedRoom(true, false)
		r.log = slog.New(slog.DiscardHandler)
		joins := make(chan struct{}, 8)
		release := make(chan struct{})
		r.joinAgain = func(context.Context) error {
			joins <- struct{}{}
			<-release
			return nil
		}
		suspects := make(chan error, 8)
		r.cfg.OnSuspect = func(err error) { suspects <- err }
		r.sent("m1", "a")
		r.sent("m2", "b")

		feed(t, r, errorFromRoom("m1", "forbidden"))           // a refusal, not a ghost
		feed(t, r, errorFromRoom("unknown", "not-acceptable")) // not our message
		synctest.Wait()
		if len(joins)+len(suspects) != 0 {
			t.Fatal("rejoined on an unrelated error")
		}
		feed(t, r, errorFromRoom("m1", "not-acceptable"))
		synctest.Wait()
		if len(joins) != 1 || len(suspects) != 1 {
			t.Fatalf("%d joins, %d signals; want 1, 1", len(joins), len(suspects))
		}
		var de *stanza.DeliveryError
		if err := <-suspects; !errors.As(err, &de) || de.Stanza.Condition != "not-acceptable" {
			t.Fatalf("OnSuspect got %v", err)
		}
		// While the rejoin runs, a second error starts no other one.
		feed(t, r, errorFromRoom("m2", "item-not-found"))
		synctest.Wait()
		if len(joins) != 1 || len(suspects) != 0 {
			t.Fatalf("during the rejoin: %d joins, %d signals; want 1, 0", len(joins), len(suspects))
		}
		close(release)
		synctest.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.rejoining {
			t.Fatal("still rejoining")
		}
	})
}

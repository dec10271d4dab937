package muc

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	xstanza "mellium.im/xmpp/stanza"

	"github.com/xmpptrack/xmpptrack"
	"github.com/xmpptrack/xmpptrack/stanza"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// errorFrom builds an error reply to our message id from the given address.
func errorFrom(from, id, condition string) string {
	return `<message xmlns='jabber:client' type='error' from='` + from + `' to='alice@example.org/x' id='` + id + `'>` +
		`<error type='cancel'><` + condition + ` xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`
}

// errorFromRoom builds the room's error reply to our message id.
func errorFromRoom(id, condition string) string { return errorFrom(roomJID, id, condition) }

// TestSuspectMembership: an error from the room for one of our room
// messages that suggests a ghost membership makes the room join again,
// tells the application, and makes the client forget the occupants'
// private messages waiting for a marker (before the rejoin's answers are
// read: on the reading goroutine), once per rejoin; other errors, and
// errors for ids we did not send, do none of it. Before, the client kept
// them, and a marker could reach whoever held a nick after the rejoin.
func TestSuspectMembership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := scriptedRoom(true, false)
		r.log = slog.New(slog.DiscardHandler)
		// The client forgets a room's private messages when an observer
		// with that Room and a Route is removed (TestOccupantsForgottenWhileJoined
		// pins that side): the twin must be one, and read nothing.
		observes, forgets := 0, 0
		r.observe = func(o xmpptrack.Observer) func() {
			observes++
			if !o.Room.Equal(r.roomJID) || o.Room.Resourcepart() != "" || o.Route == nil {
				t.Errorf("the twin observes %q with Route %v; want the room %s with a Route", o.Room, o.Route != nil, roomJID)
			}
			if o.Message != nil || o.Presence != nil || o.Connected != nil {
				t.Error("the twin reads stanzas or connections")
			}
			return func() { forgets++ }
		}
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
		if len(joins)+len(suspects)+forgets != 0 {
			t.Fatal("rejoined on an unrelated error")
		}
		feed(t, r, errorFromRoom("m1", "not-acceptable"))
		if observes != 1 || forgets != 1 {
			t.Errorf("when feed returned, the twin was added %d times, removed %d times; want 1, 1", observes, forgets)
		}
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
		if len(joins) != 1 || len(suspects) != 0 || forgets != 1 {
			t.Fatalf("during the rejoin: %d joins, %d signals, %d forgets; want 1, 0, 1", len(joins), len(suspects), forgets)
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

// TestOccupantErrorsCauseNoRejoin: error messages from an occupant
// (room@service/nick, which the room forwards) are anybody's word: 6,000
// of them for our message's id make us rejoin not once.
func TestOccupantErrorsCauseNoRejoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := scriptedRoom(true, false)
		var joins atomic.Int64
		r.joinAgain = func(context.Context) error { joins.Add(1); return nil }
		suspects := make(chan error, 8)
		r.cfg.OnSuspect = func(err error) { suspects <- err }
		r.sent("m1", "a")
		for i := range 6000 {
			feed(t, r, errorFrom(roomJID+"/carol", "m1", []string{"not-acceptable", "item-not-found", "remote-server-not-found"}[i%3]))
			synctest.Wait()
		}
		if n := joins.Load(); n != 0 || len(suspects) != 0 {
			t.Fatalf("an occupant's errors made us rejoin %d times (%d signals)", n, len(suspects))
		}
		r.Leave(context.Background(), "")
	})
}

// TestRejoinsArePaced: even the room itself cannot make us rejoin in a
// loop: an error every 10 ms for a minute gives a rejoin at once, then
// after 2, 4, 8, 16 s... (5 in the minute).
func TestRejoinsArePaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := scriptedRoom(true, false)
		var joins atomic.Int64
		r.joinAgain = func(context.Context) error { joins.Add(1); return nil }
		r.sent("m1", "a")
		start := time.Now()
		for time.Since(start) < time.Minute {
			feed(t, r, errorFromRoom("m1", "not-acceptable"))
			time.Sleep(10 * time.Millisecond)
		}
		if n := joins.Load(); n != 5 {
			t.Fatalf("%d rejoins in a minute of errors every 10 ms; want 5 (at 0, 2, 6, 14, 30 s)", n)
		}
		r.Leave(context.Background(), "")
	})
}

// TestLeaveStopsRejoin: once Leave returns, the room is never joined
// again: a rejoin about to start does not, and one in progress is
// stopped and waited for.
func TestLeaveStopsRejoin(t *testing.T) {
	t.Run("pending", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := scriptedRoom(true, false)
			var returned, lateJoin atomic.Bool
			r.joinAgain = func(context.Context) error {
				if returned.Load() {
					lateJoin.Store(true)
				}
				return nil
			}
			r.connected(false)
			r.Leave(context.Background(), "")
			returned.Store(true)
			synctest.Wait()
			if lateJoin.Load() {
				t.Fatal("joined the room again after Leave returned")
			}
		})
	})
	t.Run("in_progress", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := scriptedRoom(true, false)
			var inJoin atomic.Bool
			r.joinAgain = func(ctx context.Context) error {
				inJoin.Store(true)
				defer inJoin.Store(false)
				<-ctx.Done() // the room never answers
				return ctx.Err()
			}
			r.connected(false)
			synctest.Wait()
			if !inJoin.Load() {
				t.Fatal("no rejoin started")
			}
			r.Leave(context.Background(), "")
			if inJoin.Load() {
				t.Fatal("Leave returned while a rejoin was still running")
			}
		})
	})
}

// TestRejoinEndsWithTheClient: a rejoin that fails because the client was
// closed does not go on trying: the room is settled and the goroutine ends
// (synctest fails the test if it is still waiting).
func TestRejoinEndsWithTheClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := scriptedRoom(true, false)
		var joins atomic.Int64
		r.joinAgain = func(context.Context) error { joins.Add(1); return xmpptrack.ErrClientClosed }
		m := r.sent("m1", "a")
		r.connected(false)
		synctest.Wait()
		select {
		case <-r.Done():
		default:
			t.Fatal("the room is not settled")
		}
		if joins.Load() != 1 || m.State() != tracking.Closed {
			t.Fatalf("%d joins, tracker %v", joins.Load(), m.State())
		}
	})
}

// TestRejoinRefused: a rejoin the room refuses ends the room, except for a
// nick conflict, which is tried again at the rejoin pace.
func TestRejoinRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := scriptedRoom(true, false)
		answers := []error{xstanza.Error{Type: xstanza.Cancel, Condition: xstanza.Conflict}, xstanza.Error{Type: xstanza.Auth, Condition: xstanza.Forbidden}}
		var joins atomic.Int64
		r.joinAgain = func(context.Context) error { return answers[joins.Add(1)-1] }
		r.connected(false)
		synctest.Wait()
		if joins.Load() != 1 {
			t.Fatalf("%d joins", joins.Load())
		}
		select {
		case <-r.Done():
			t.Fatal("a nick conflict ended the room")
		default:
		}
		time.Sleep(rejoinMin)
		synctest.Wait()
		select {
		case <-r.Done():
		default:
			t.Fatal("a ban did not end the room")
		}
		if joins.Load() != 2 {
			t.Fatalf("%d joins", joins.Load())
		}
	})
}

package sm

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp"
)

// TestHandledBoundsAcks: with Config.Handled, the answer to the server's
// <r/> covers only what Handled allows, never less than an answer before,
// never more than was received; and an unsolicited ack (SendAck) follows
// the same rule.
func TestHandledBoundsAcks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		var done atomic.Uint32 // the stanzas the application finished with
		var asked []uint32
		st := New(Config{Handled: func(received uint32) uint32 {
			asked = append(asked, received) // one caller at a time here
			return done.Load()
		}})
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sc := c.sc
		from := `from='peer@example.org/x' to='user@example.net/res1'`
		for range 3 {
			sc.send(`<message ` + from + ` type='chat'><body>x</body></message>`)
		}
		done.Store(1)
		sc.requestAck() // 3 received, 1 handled: <a h='1'/>
		synctest.Wait()
		done.Store(0) // a bound below what was told: the told h stands
		sc.requestAck()
		synctest.Wait()
		done.Store(7) // above what was received: the received count
		sc.requestAck()
		synctest.Wait()
		sc.send(`<message ` + from + ` type='chat'><body>x</body></message>`)
		synctest.Wait()
		done.Store(2)
		if err := st.SendAck(context.Background(), c.sess); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		_, _, acks, _ := srv.snapshot() // (the scripted server expects the received counts)
		want := []uint32{1, 1, 3, 3}
		if len(acks) != len(want) {
			t.Fatalf("acks %v, want %v", acks, want)
		}
		for i := range want {
			if acks[i] != want[i] {
				t.Fatalf("acks %v, want %v", acks, want)
			}
		}
		if len(asked) != 4 || asked[0] != 3 || asked[2] != 3 || asked[3] != 4 {
			t.Errorf("Handled was asked for %v, want the received counts [3 3 3 4]", asked)
		}
		if r := st.Resumption(); r.Told != 3 || r.Handled != 4 {
			t.Errorf("Resumption: told %d, handled %d; want 3 and 4", r.Told, r.Handled)
		}
	})
}

// TestHandledBoundsResume: the h of <resume/> within the same process is
// bounded by Config.Handled like any ack (never below an h told before),
// and recorded as told; the server sends again what it did not cover, and
// the inbound count goes on from the claim.
func TestHandledBoundsResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		var done atomic.Uint32 // the stanzas the application finished with
		st := New(Config{Handled: func(uint32) uint32 { return done.Load() }})
		var mu sync.Mutex
		var seen []string
		inner := xmpp.HandlerFunc(func(_ xmlstreamTRE, start *xmlStart) error {
			mu.Lock()
			seen = append(seen, attrOf(start, "id"))
			mu.Unlock()
			return nil
		})
		c := mustDial(t, srv, st, inner)
		synctest.Wait()
		for i := range 3 {
			c.sc.send(fmt.Sprintf(`<message from='peer@example.org/x' type='chat' id='s%d'><body>x</body></message>`, i))
		}
		done.Store(1)
		c.sc.requestAck() // <a h='1'/>: s1 and s2 are still in callbacks
		synctest.Wait()
		done.Store(2) // s1 finished, s2 not: a kill now must get s2 again
		c.drop()

		c = mustDial(t, srv, st, inner)
		synctest.Wait()
		if !st.Resumed() {
			t.Fatal("not resumed")
		}
		if r := st.Resumption(); r.Told != 2 || r.Handled != 3 {
			t.Errorf("after resuming: told %d, handled %d; want 2 (the claim) and 3 (s2 again)", r.Told, r.Handled)
		}
		done.Store(0) // below the h told: the claim stays 2
		c.drop()
		c = mustDial(t, srv, st, inner)
		synctest.Wait()
		done.Store(3)
		c.sc.requestAck() // the server expects its own count, 3
		synctest.Wait()
		srv.mu.Lock()
		resumedAt := slices.Clone(srv.resumedAt)
		srv.mu.Unlock()
		if !slices.Equal(resumedAt, []uint32{2, 2}) {
			t.Errorf("<resume h/>: %v, want [2 2] (the stanzas finished, never below an h told)", resumedAt)
		}
		_, _, acks, ackErrs := srv.snapshot()
		// (The scripted server expects the received counts: only the bounded
		// first answer differs.)
		if len(ackErrs) != 1 || !slices.Equal(acks, []uint32{1, 3}) {
			t.Errorf("acks %v %v, want [1 3]", acks, ackErrs)
		}
		mu.Lock()
		if want := []string{"s0", "s1", "s2", "s2", "s2"}; !slices.Equal(seen, want) {
			t.Errorf("application saw %v, want %v (s2 again after each resumption)", seen, want)
		}
		mu.Unlock()
		c.close()
	})
}

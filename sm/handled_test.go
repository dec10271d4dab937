package sm

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
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

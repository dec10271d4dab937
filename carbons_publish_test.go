package xmpptrack

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/xmpptrack/xmpptrack/sm"
)

// TestCarbonsOnePerStream: the reconnect loop runs its connections'
// publishes one at a time, in connection order, so a resumed connection
// decides on the carbons IQ only once the previous publish recorded its
// write. Here a fresh stream's publish is held between the IQ's write and
// its record while its connection drops and the next one resumes the
// stream: the server gets one carbons IQ for that stream, not two (without
// the serialisation the resumed connection's publish finds no IQ recorded
// for the stream and writes another, while the first one's is held).
func TestCarbonsOnePerStream(t *testing.T) {
	roots, now := testRoots(t), time.Now()
	synctest.Test(t, func(t *testing.T) {
		srv, dial := newPipePeer(t)
		cfg := pipePeerConfig(roots, now, dial)
		cfg.NoCarbons = false
		ctx, cancel := context.WithTimeout(t.Context(), testWait)
		defer cancel()
		c, err := Dial(ctx, testJID, peerPassword, &cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		defer c.Close()
		pc := srv.next(t) // stream 1, its carbons IQ written before Dial returned
		synctest.Wait()   // and read by the server

		released := make(chan struct{})
		release := sync.OnceFunc(func() { close(released) })
		defer release() // before Close: a failed test must not leave it waiting
		var calls atomic.Int32
		hold := func() {
			if calls.Add(1) == 1 {
				<-released
			}
		}
		c.carbonsHook.Store(&hold)
		srv.set(func(srv *peerServer) { srv.noResume = true })
		pc.conn.Close()
		pc = srv.next(t)                    // stream 2: a fresh bind, its publish held after the IQ's write
		time.Sleep(10 * sm.DefaultAckDelay) // virtual time: the IQ's <r/> and <a/>
		synctest.Wait()
		if n := c.sm.Info().Unacked; n != 0 {
			t.Fatalf("%d stanzas unacknowledged on stream 2: a retransmitted IQ would count twice", n)
		}
		srv.set(func(srv *peerServer) { srv.noResume = false })
		pc.conn.Close()
		if pc = srv.next(t); !pc.resumed {
			t.Fatal("the third connection did not resume stream 2")
		}
		synctest.Wait() // its publish waits for stream 2's, or has run
		release()
		synctest.Wait()

		var got []string
		srv.set(func(srv *peerServer) { got = slices.Clone(srv.carbons) })
		if want := []string{"sm-1", "sm-2"}; !slices.Equal(got, want) {
			t.Errorf("carbons IQs per SM session: %q, want %q (one per stream)", got, want)
		}
	})
}

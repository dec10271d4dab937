package sm

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestAckTimeoutErrorCarriesBound: the error Serve returns for a dead
// connection carries the bound the State enforced (AckTimeout plus four
// smoothed round trips, as Info.AckBound reported it) and how long the
// answer had been awaited, and it matches ErrAckTimeout.
func TestAckTimeoutErrorCarriesBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 200 * time.Millisecond
		srv := newFakeServer(t)
		srv.rtt = rtt
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: 2 * time.Second}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
			rec.next(t)
		}
		want := 2*time.Second + 4*rtt
		if b := st.Info().AckBound; b != want {
			t.Fatalf("Info.AckBound %v, want %v", b, want)
		}
		synctest.Wait() // the server waits in a read (see TestDeadConnectionDetected)
		c.sc.conn.freeze()
		sendMsg(t, st, c.sess, "frozen")
		err := c.waitServed()
		var ae *AckTimeoutError
		if !errors.As(err, &ae) || !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v, want an *AckTimeoutError matching ErrAckTimeout", err)
		}
		if ae.Bound != want || ae.Waited != want {
			t.Errorf("bound %v, waited %v; want %v, %v", ae.Bound, ae.Waited, want, want)
		}
	})
}

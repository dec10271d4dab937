package sm

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestFrozenAfterResumedFallsBack: a server that answers <resumed/> and
// then takes no byte of ours. The resumed connection dies without an <a/>,
// which is a failed resumption whether or not our <r/> got out, so the
// next connection starts a new session instead of resuming the same stream
// for ever (a rule that excused a connection whose <r/> was stuck behind a
// blocked write resumed it on every connection).
func TestFrozenAfterResumedFallsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: 2 * time.Second, IdleProbe: 10 * time.Second}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "m0")
		rec.next(t)
		c.drop()
		for i := range 2 {
			c = mustDial(t, srv, st, nil)
			if !st.Resumed() {
				c.close()
				return
			}
			synctest.Wait()
			c.sc.conn.freeze()
			// A write the frozen server never takes: the requester's <r/>
			// waits behind it.
			if _, err := c.conn.Write([]byte(" ")); err != nil {
				t.Fatal(err)
			}
			if err := c.waitServed(); !errors.Is(err, ErrAckTimeout) {
				t.Fatalf("connection %d: Serve: %v, want ErrAckTimeout", i+2, err)
			}
		}
		t.Fatalf("two resumed connections in a row died with nothing taken by the server, and a third resumed again (resumable %v)", st.Info().Resumable)
	})
}

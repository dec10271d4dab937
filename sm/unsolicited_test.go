package sm

import (
	"fmt"
	"testing"
	"testing/synctest"
)

// TestUnsolicitedFailedIgnored: a <failed/> that answers no <enable/> (it
// came after <enabled/>) changes nothing: stream management stays on, the
// stanzas waiting for an ack stay queued and are acknowledged by the next
// <a/>, and the inbound count goes on. (It once emptied the queue without
// a callback, so those stanzas vanished, and stopped the inbound count.)
func TestUnsolicitedFailedIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		c.sc.raw(`<failed xmlns='urn:xmpp:sm:3'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`)
		c.sc.send(`<message xmlns='jabber:client' id='s1' type='chat'><body>1</body></message>`)
		c.sc.requestAck()
		synctest.Wait()
		if info := st.Info(); !info.Enabled || !info.Resumable || info.Unacked != 3 || info.Sent != 3 || info.Acked != 0 {
			t.Fatalf("after an unsolicited <failed/>: %+v, want stream management on, resumable, 3 unacknowledged", info)
		}
		srv.releaseR()
		for i := range 3 {
			if ev := rec.next(t); ev != fmt.Sprintf("acked:m%d", i) {
				t.Fatalf("event %d: %s", i, ev)
			}
		}
		_, _, acks, ackErrs := srv.snapshot()
		if len(acks) != 1 || len(ackErrs) != 0 {
			t.Errorf("the client's acks: %v %v, want [1]: the inbound count goes on", acks, ackErrs)
		}
		select {
		case <-c.served:
			t.Fatalf("the connection ended: %v", c.serveEr)
		default:
		}
		c.close()
	})
}

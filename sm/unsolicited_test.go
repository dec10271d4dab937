package sm

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
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

// TestUnsolicitedEnabledIgnored: a second <enabled/>, which no <enable/>
// asked for, changes nothing: the inbound count goes on (it was taken back
// to 0, so the next ack went below one sent before, which Prosody ends a
// stream on) and the SM-ID stays the one the stream is resumed with.
func TestUnsolicitedEnabledIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		c.sc.send(`<message xmlns='jabber:client' id='s1' type='chat'><body>1</body></message>`)
		c.sc.send(`<message xmlns='jabber:client' id='s2' type='chat'><body>2</body></message>`)
		c.sc.requestAck()
		synctest.Wait()
		c.sc.raw(`<enabled xmlns='urn:xmpp:sm:3' id='other' resume='true' max='5'/>`)
		c.sc.send(`<message xmlns='jabber:client' id='s3' type='chat'><body>3</body></message>`)
		c.sc.requestAck()
		synctest.Wait()
		_, _, acks, ackErrs := srv.snapshot()
		if len(acks) != 2 || acks[0] != 2 || acks[1] != 3 || len(ackErrs) != 0 {
			t.Errorf("the client's acks: %v %v, want [2 3]", acks, ackErrs)
		}
		st.mu.Lock()
		id := st.id
		st.mu.Unlock()
		srv.mu.Lock()
		want := srv.smID
		srv.mu.Unlock()
		if info := st.Info(); id != want || !info.Enabled || !info.Resumable || info.Max != time.Minute || info.Handled != 3 {
			t.Errorf("after a second <enabled/>: SM-ID %q (want %q), %+v", id, want, info)
		}
		sendMsg(t, st, c.sess, "m0")
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatalf("event %s", ev)
		}
		c.drop()
		mustDial(t, srv, st, nil).close()
		if !st.Resumed() {
			t.Error("the stream was not resumed with its own SM-ID")
		}
	})
}

// TestUnsolicitedResumedIgnored: a <resumed/> on a connection that sent no
// <resume/> (here stream management was refused) starts no inbound count.
func TestUnsolicitedResumedIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.enableFails = true
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		if err := st.WaitEnabled(t.Context()); err != ErrNotEnabled {
			t.Fatalf("WaitEnabled: %v", err)
		}
		c.sc.raw(`<resumed xmlns='urn:xmpp:sm:3' previd='x' h='0'/>`)
		c.sc.send(`<message xmlns='jabber:client' id='s1' type='chat'><body>1</body></message>`)
		synctest.Wait()
		if info := st.Info(); info.Enabled || info.Handled != 0 {
			t.Errorf("after an unsolicited <resumed/>: %+v, want nothing counted", info)
		}
		c.close()
	})
}

package sm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp"
)

// loseOnce makes the server drop the given ids the first time it sees them.
func loseOnce(ids ...string) func(string) bool {
	var mu sync.Mutex
	pending := map[string]bool{}
	for _, id := range ids {
		pending[id] = true
	}
	return func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		if pending[id] {
			delete(pending, id)
			return true
		}
		return false
	}
}

// TestResumeRetransmits: stanzas the server did not acknowledge are
// retransmitted on resumption, in order, with their ids, before anything
// new; the server's retransmissions are counted on.
func TestResumeRetransmits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.lose = loseOnce("m3", "m4")
		rec := newRecorder()
		st := New(rec.config(Config{}))
		var seen []string
		var seenMu sync.Mutex
		inner := xmpp.HandlerFunc(func(_ xmlstreamTRE, start *xmlStart) error {
			seenMu.Lock()
			seen = append(seen, attrOf(start, "id"))
			seenMu.Unlock()
			return nil
		})
		c := mustDial(t, srv, st, inner)
		for i := range 5 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		if evs := waitEvents(t, rec, 3); !slices.Equal(evs, []string{"acked:m0", "acked:m1", "acked:m2"}) {
			t.Fatal(evs)
		}
		for i := range 3 {
			c.sc.send(fmt.Sprintf(`<message from='peer@example.org/x' id='s%d'/>`, i))
		}
		synctest.Wait()
		old := c.sc
		c.drop()
		// Written by the server after the connection broke: lost in
		// transit, so the server retransmits it after resumption.
		old.send(`<message from='peer@example.org/x' id='s3'/>`)
		if info := st.Info(); !info.Resumable || info.Unacked != 2 {
			t.Fatalf("before reconnect: %+v", info)
		}

		c = mustDial(t, srv, st, inner)
		if !st.Resumed() {
			t.Fatal("not resumed")
		}
		sendMsg(t, st, c.sess, "new")
		c.sc.requestAck()
		if evs := waitEvents(t, rec, 3); !slices.Equal(evs, []string{"acked:m3", "acked:m4", "acked:new"}) {
			t.Fatal(evs)
		}
		synctest.Wait()
		if ids := srv.ids(); !slices.Equal(ids, []string{"m0", "m1", "m2", "m3", "m4", "new"}) {
			t.Fatalf("server got %v", ids)
		}
		srv.mu.Lock()
		resumedAt, binds := srv.resumedAt, srv.nextID
		srv.mu.Unlock()
		if !slices.Equal(resumedAt, []uint32{3}) || binds != 2 { // one bind, one SM-ID
			t.Fatalf("resume h %v, ids handed out %d", resumedAt, binds)
		}
		_, _, acks, ackErrs := srv.snapshot()
		if len(ackErrs) > 0 || acks[len(acks)-1] != 4 {
			t.Fatalf("answers %v %v", acks, ackErrs)
		}
		seenMu.Lock()
		if !slices.Equal(seen, []string{"s0", "s1", "s2", "s3"}) {
			t.Fatalf("application saw %v", seen)
		}
		seenMu.Unlock()
		if info := st.Info(); info.Unacked != 0 || info.Sent != 6 || info.Handled != 4 {
			t.Fatalf("after resume: %+v", info)
		}
		c.close()
	})
}

// TestResumeAcksFromStart: what <resumed h/> acknowledges is reported
// before Start returns, on its goroutine.
func TestResumeAcksFromStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		sendMsg(t, st, c.sess, "m1")
		synctest.Wait()
		c.drop()
		c = mustDial(t, srv, st, nil)
		if got := rec.ids("acked"); !slices.Equal(got, []string{"m0", "m1"}) || len(rec.ch) != 2 {
			t.Fatalf("acked by <resumed/>: %v", got)
		}
		if info := st.Info(); info.Unacked != 0 {
			t.Fatalf("info %+v", info)
		}
		c.close()
	})
}

// TestResumeFailed covers <failed/> with and without h under both
// policies, with stanzas of every kind queued. What the policy reports
// lost is reported by Start; the re-sends follow <enabled/>.
func TestResumeFailed(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		reply  string
		want   []string
	}{
		{"h resend", Resend, `<failed xmlns='urn:xmpp:sm:3' h='2'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`,
			[]string{"acked:m0", "acked:m1", "lost:p0", "resent:m2", "resent:m3", "acked:m2", "acked:m3"}},
		{"no h resend", Resend, `<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>`,
			[]string{"lost:p0", "resent:m0", "resent:m1", "resent:m2", "resent:m3", "acked:m0", "acked:m1", "acked:m2", "acked:m3"}},
		{"h report lost", ReportLost, `<failed xmlns='urn:xmpp:sm:3' h='2'/>`,
			[]string{"acked:m0", "acked:m1", "lost:m2", "lost:p0", "lost:m3"}},
		{"no h report lost", ReportLost, `<failed xmlns='urn:xmpp:sm:3'/>`,
			[]string{"lost:m0", "lost:m1", "lost:m2", "lost:p0", "lost:m3"}},
		{"h too high ignored", ReportLost, `<failed xmlns='urn:xmpp:sm:3' h='9'/>`,
			[]string{"lost:m0", "lost:m1", "lost:m2", "lost:p0", "lost:m3"}},
		{"malformed h ignored", ReportLost, `<failed xmlns='urn:xmpp:sm:3' h='x'/>`,
			[]string{"lost:m0", "lost:m1", "lost:m2", "lost:p0", "lost:m3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				holdAcks(srv)
				rec := newRecorder()
				st := New(rec.config(Config{Policy: tc.policy}))
				c := mustDial(t, srv, st, nil)
				sendMsg(t, st, c.sess, "m0")
				sendMsg(t, st, c.sess, "m1")
				sendMsg(t, st, c.sess, "m2")
				if err := c.sess.Send(t.Context(), rawReader([]byte(`<presence xmlns='jabber:client' id='p0'/>`))); err != nil {
					t.Fatal(err)
				}
				sendMsg(t, st, c.sess, "m3")
				synctest.Wait()
				c.drop()
				srv.mu.Lock()
				srv.holdR = false
				srv.resumeReply = func(uint32) string { return tc.reply }
				srv.mu.Unlock()

				c = mustDial(t, srv, st, nil)
				if st.Resumed() {
					t.Fatal("resumed")
				}
				if evs := waitEvents(t, rec, len(tc.want)); !sameOrderPerKind(evs, tc.want) {
					t.Fatalf("got  %v\nwant %v", evs, tc.want)
				}
				synctest.Wait()
				gotten, _, _, _ := srv.snapshot()
				var resent []string
				for _, g := range gotten[5:] {
					if !g.delay || g.body != "hi "+g.id {
						t.Errorf("re-sent %+v without delay or body", g)
					}
					resent = append(resent, g.id)
				}
				var wantResent []string
				for _, ev := range tc.want {
					if id, ok := strings.CutPrefix(ev, "resent:"); ok {
						wantResent = append(wantResent, id)
					}
				}
				if !slices.Equal(resent, wantResent) {
					t.Errorf("server got re-sent %v, want %v", resent, wantResent)
				}
				// The re-sent messages, acknowledged on the new stream, carry
				// the time they were first written (the bubble's epoch).
				for _, s := range rec.acked[len(rec.acked)-len(wantResent):] {
					if !strings.Contains(string(s.Raw), `<delay xmlns="urn:xmpp:delay" stamp="2000-01-01T00:00:00.000Z">`) {
						t.Errorf("re-sent stanza without the original time: %s", s.Raw)
					}
				}
				if info := st.Info(); info.Unacked != 0 || !info.Enabled || !info.Resumable {
					t.Fatalf("info %+v", info)
				}
				// Both counters restarted with the new <enable/>.
				c.sc.send(`<message from='peer@example.org/x' id='s0'/>`)
				c.sc.requestAck()
				synctest.Wait()
				if _, _, acks, errs := srv.snapshot(); len(errs) > 0 || acks[len(acks)-1] != 1 {
					t.Fatalf("inbound count after a new enable: %v %v", acks, errs)
				}
				c.close()
			})
		})
	}
}

// TestResumedInvalid: a <resumed/> that cannot be right fails the
// connection; the stream is not resumed again and the queue goes to the
// policy on the next connection.
func TestResumedInvalid(t *testing.T) {
	tests := []struct {
		name  string
		reply func(h uint32) string
		check func(error) bool
	}{
		{"other previd", func(h uint32) string {
			return fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='other' h='%d'/>`, h)
		}, func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"missing h", func(uint32) string { return `<resumed xmlns='urn:xmpp:sm:3' previd='sm-2'/>` },
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"h too high", func(h uint32) string {
			return fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='sm-2' h='%d'/>`, h+5)
		},
			func(err error) bool { return errors.Is(err, ErrHandledCountTooHigh) }},
		{"h below the acknowledged count", func(h uint32) string {
			return fmt.Sprintf(`<resumed xmlns='urn:xmpp:sm:3' previd='sm-2' h='%d'/>`, h+1<<31)
		}, func(err error) bool { return errors.Is(err, ErrProtocol) }},
		{"unexpected element", func(uint32) string { return `<enabled xmlns='urn:xmpp:sm:3'/>` },
			func(err error) bool { return errors.Is(err, ErrProtocol) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				holdAcks(srv)
				rec := newRecorder()
				st := New(rec.config(Config{}))
				c := mustDial(t, srv, st, nil)
				sendMsg(t, st, c.sess, "m0")
				synctest.Wait()
				c.drop()
				srv.mu.Lock()
				srv.resumeReply = tc.reply
				srv.mu.Unlock()
				_, err := dial(t, srv, st, nil)
				if !tc.check(err) {
					t.Fatalf("dial: %v", err)
				}
				if tc.name == "h too high" && !strings.Contains(srv.cur.conn.received(), "handled-count-too-high") {
					t.Error("no stream error sent")
				}
				if info := st.Info(); info.Resumable || info.Unacked != 1 {
					t.Fatalf("info %+v", info)
				}
				srv.mu.Lock()
				srv.resumeReply, srv.holdR = nil, false
				srv.mu.Unlock()
				c = mustDial(t, srv, st, nil)
				if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"resent:m0", "acked:m0"}) {
					t.Fatal(evs)
				}
				srv.mu.Lock()
				resumes := srv.resumes
				srv.mu.Unlock()
				if resumes != 1 {
					t.Fatalf("%d resumption attempts", resumes)
				}
				c.close()
			})
		})
	}
}

// TestReconnectWithoutSM: the server stops offering stream management;
// the queued messages are re-sent on the plain stream.
func TestReconnectWithoutSM(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait()
		c.drop()
		srv.offerSM = false
		c = mustDial(t, srv, st, nil)
		synctest.Wait()
		if evs := waitEvents(t, rec, 1); evs[0] != "resent:m0" || st.Enabled() || st.Info().Unacked != 0 {
			t.Fatalf("%v %+v", evs, st.Info())
		}
		if ids := srv.ids(); !slices.Equal(ids, []string{"m0", "m0"}) {
			t.Fatal(ids)
		}
		c.close()
	})
}

// TestAbandon reports everything queued as lost.
func TestAbandon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		sendMsg(t, st, c.sess, "m1")
		synctest.Wait()
		c.close()
		st.Abandon()
		if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"lost:m0", "lost:m1"}) {
			t.Fatal(evs)
		}
		if info := st.Info(); info.Resumable || info.Unacked != 0 {
			t.Fatalf("%+v", info)
		}
	})
}

// TestStartFailsDuringRetransmission: the connection breaks while Start
// retransmits; nothing is lost or duplicated on the next resumption.
func TestStartFailsDuringRetransmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.lose = loseOnce("m0", "m1", "m2")
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		c.drop()
		srv.mu.Lock()
		srv.dieOnResume = true
		srv.mu.Unlock()
		if _, err := dial(t, srv, st, nil); err == nil {
			t.Fatal("dial succeeded on a dead connection")
		}
		if !st.Resumed() {
			t.Fatal("the failed attempt did not reach Start")
		}
		if info := st.Info(); info.Unacked != 3 || !info.Resumable {
			t.Fatalf("after failed Start: %+v", info)
		}
		c = mustDial(t, srv, st, nil)
		if evs := waitEvents(t, rec, 3); !slices.Equal(evs, []string{"acked:m0", "acked:m1", "acked:m2"}) {
			t.Fatal(evs)
		}
		if ids := srv.ids(); !slices.Equal(ids, []string{"m0", "m1", "m2"}) {
			t.Fatalf("server got %v", ids)
		}
		c.close()
	})
}

// sameOrderPerKind reports whether got has the events of want, in the same
// order for each kind (acked, lost, resent), every ack of a re-sent stanza
// after its re-send. The interleaving of re-sends and acks depends on
// when the answers arrive.
func sameOrderPerKind(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	of := func(evs []string, kind string) []string {
		var out []string
		for _, e := range evs {
			if strings.HasPrefix(e, kind+":") {
				out = append(out, e)
			}
		}
		return out
	}
	for _, k := range []string{"acked", "lost", "resent"} {
		if !slices.Equal(of(got, k), of(want, k)) {
			return false
		}
	}
	for i, e := range got {
		id, ok := strings.CutPrefix(e, "acked:")
		if j := slices.Index(got, "resent:"+id); ok && j > i {
			return false
		}
	}
	return true
}

package sm

import (
	"context"
	"encoding/xml"
	"fmt"
	"math"
	"strings"
	"testing"
	"testing/synctest"

	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/receipts"
	xstanza "mellium.im/xmpp/stanza"
)

// waitEvents reads n callbacks and returns them.
func waitEvents(t *testing.T, rec *recorder, n int) []string {
	t.Helper()
	evs := make([]string, 0, n)
	for range n {
		evs = append(evs, rec.next(t))
	}
	return evs
}

// TestCountsEveryStanza checks h in both directions against the scripted
// server's own counts, with stanzas the application never sent itself:
// receipts auto-replies, mellium's automatic IQ errors and an IQ result
// taken by a SendIQ waiter.
func TestCountsEveryStanza(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		app := mux.New(xstanza.NSClient, receipts.Handle(&receipts.Handler{}))
		c := mustDial(t, srv, st, app)
		synctest.Wait()
		sc := c.sc
		from := `from='peer@example.org/x' to='user@example.net/res1'`
		sc.send(`<message ` + from + ` id='in1' type='chat'><body>1</body></message>`)
		sc.requestAck()
		sc.send(`<message ` + from + ` id='in2' type='chat'><body>2</body><request xmlns='urn:xmpp:receipts'/></message>`)
		sc.send(`<iq ` + from + ` type='get' id='q1'><query xmlns='urn:example:unknown'/></iq>`)
		sc.send(`<presence ` + from + `/>`)
		sc.requestAck()

		ctx := context.Background()
		resp, err := c.sess.SendIQ(ctx, xml.NewDecoder(strings.NewReader(
			`<iq xmlns='jabber:client' type='get' id='ping1' to='example.net'><ping xmlns='urn:xmpp:ping'/></iq>`)))
		if err != nil {
			t.Fatalf("SendIQ: %v", err)
		}
		resp.Close()
		sendMsg(t, st, c.sess, "out1")
		if err := c.sess.Send(ctx, xml.NewDecoder(strings.NewReader(`<presence xmlns='jabber:client' id='p1'/>`))); err != nil {
			t.Fatal(err)
		}
		sendMsg(t, st, c.sess, "out2")
		sc.send(`<iq ` + from + ` type='set' id='q2'><query xmlns='urn:example:unknown'/></iq>`)
		sc.requestAck()

		// Outbound: ping1, out1, p1, out2, the receipt for in2 and two IQ
		// errors (q1, q2), in whatever order they were written.
		evs := waitEvents(t, rec, 7)
		synctest.Wait()

		gotten, _, acks, ackErrs := srv.snapshot()
		if len(ackErrs) > 0 || len(acks) != 3 {
			t.Errorf("client answers: %v, errors %v", acks, ackErrs)
		}
		if len(gotten) != 7 {
			t.Errorf("server got %d stanzas: %v", len(gotten), gotten)
		}
		var errs, receipts int
		for _, g := range gotten {
			switch {
			case g.name == "iq" && g.typ == "error":
				errs++
			case g.name == "message" && g.body == "":
				receipts++
			}
		}
		if errs != 2 || receipts != 1 {
			t.Errorf("auto replies: %d IQ errors, %d receipts; got %v", errs, receipts, gotten)
		}
		info := st.Info()
		srv.mu.Lock()
		srvIn, srvOut := srv.inH, srv.outH
		srv.mu.Unlock()
		if info.Sent != 7 || info.Acked != 7 || info.Unacked != 0 || info.Sent != srvIn {
			t.Errorf("outbound: info %+v, server counted %d; events %v", info, srvIn, evs)
		}
		if info.Handled != 6 || info.Handled != srvOut {
			t.Errorf("inbound: client %d, server sent %d", info.Handled, srvOut)
		}
		c.close()
	})
}

// TestAnswersRStorm checks that every <r/> of a storm is answered, in
// order, with the count at its position in the stream.
func TestAnswersRStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for i := range 200 {
			c.sc.send(fmt.Sprintf(`<message from='peer@example.org/x' id='s%d'><body>x</body></message>`, i))
			for range 5 {
				c.sc.requestAck()
			}
		}
		synctest.Wait()
		_, _, acks, ackErrs := srv.snapshot()
		if len(acks) != 1000 || len(ackErrs) > 0 {
			t.Fatalf("%d answers, errors %v", len(acks), ackErrs[:min(len(ackErrs), 5)])
		}
		c.close()
	})
}

// TestWrapAround starts both counters just below 2^32 and checks acks,
// answers and resumption across the wrap.
func TestWrapAround(t *testing.T) {
	for _, base := range []uint32{math.MaxUint32 - 2, math.MaxUint32, 0} {
		t.Run(fmt.Sprint(base), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				srv.base = base
				rec := newRecorder()
				st := New(rec.config(Config{}))
				st.base = base
				c := mustDial(t, srv, st, nil)
				synctest.Wait()
				for i := range 6 {
					sendMsg(t, st, c.sess, fmt.Sprint("w", i))
					c.sc.send(fmt.Sprintf(`<message from='peer@example.org/x' id='in%d'/>`, i))
					c.sc.requestAck()
				}
				evs := waitEvents(t, rec, 6)
				for i, ev := range evs {
					if ev != fmt.Sprintf("acked:w%d", i) {
						t.Fatalf("events %v", evs)
					}
				}
				// The last <a/> may have come before the last stanza the
				// server sent: wait until that one was read too.
				synctest.Wait()
				if info := st.Info(); info.Sent != base+6 || info.Acked != base+6 || info.Handled != base+6 {
					t.Fatalf("info %+v", info)
				}
				// Queue two more that the server never acknowledges, then
				// resume across the wrap.
				srv.mu.Lock()
				srv.holdR = true
				srv.mu.Unlock()
				sendMsg(t, st, c.sess, "w6")
				sendMsg(t, st, c.sess, "w7")
				synctest.Wait()
				c.drop()
				c = mustDial(t, srv, st, nil)
				if !st.Resumed() {
					t.Fatal("not resumed")
				}
				if ev := waitEvents(t, rec, 2); ev[0] != "acked:w6" || ev[1] != "acked:w7" {
					t.Fatalf("after resume: %v", ev)
				}
				srv.mu.Lock()
				resumedAt := srv.resumedAt
				srv.mu.Unlock()
				if len(resumedAt) != 1 || resumedAt[0] != base+6 {
					t.Errorf("resume h %v, want %d", resumedAt, base+6)
				}
				_, _, _, ackErrs := srv.snapshot()
				if len(ackErrs) > 0 {
					t.Error(ackErrs)
				}
				c.close()
			})
		})
	}
}

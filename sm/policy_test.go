package sm

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// TestLoneStanzaLatency checks that a lone stanza is acknowledged within
// AckDelay plus one round trip, also when an <r/> is already in flight.
func TestLoneStanzaLatency(t *testing.T) {
	for _, rtt := range []time.Duration{0, 30 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				srv.rtt = rtt
				rec := newRecorder()
				st := New(rec.config(Config{}))
				c := mustDial(t, srv, st, nil)
				synctest.Wait()

				start := time.Now()
				sendMsg(t, st, c.sess, "lone")
				rec.next(t)
				if d := time.Since(start); d > DefaultAckDelay+rtt {
					t.Errorf("lone stanza acked after %v", d)
				}

				// A burst of AckEvery stanzas sends an <r/> at once; a stanza
				// right after it must not wait for that answer.
				for i := range DefaultAckEvery {
					sendMsg(t, st, c.sess, fmt.Sprint("b", i))
				}
				start = time.Now()
				sendMsg(t, st, c.sess, "late")
				for ev := ""; ev != "acked:late"; {
					ev = rec.next(t)
				}
				if d := time.Since(start); d > DefaultAckDelay+rtt {
					t.Errorf("stanza after a burst acked after %v", d)
				}
				c.close()
			})
		})
	}
}

func TestAckDelayConfigurable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.rtt = 100 * time.Millisecond
		rec := newRecorder()
		st := New(rec.config(Config{AckDelay: 30 * time.Millisecond}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		start := time.Now()
		sendMsg(t, st, c.sess, "m0") // on an idle link: <r/> at once
		synctest.Wait()
		sendMsg(t, st, c.sess, "m1") // behind m0: waits AckDelay
		if ev := rec.next(t); ev != "acked:m0" || time.Since(start) != 100*time.Millisecond {
			t.Errorf("%s after %v, want acked:m0 after one round trip", ev, time.Since(start))
		}
		if ev := rec.next(t); ev != "acked:m1" || time.Since(start) != 130*time.Millisecond {
			t.Errorf("%s after %v, want acked:m1 after AckDelay and a round trip", ev, time.Since(start))
		}
		c.close()
	})
}

// TestOneRequestOutstanding checks that a busy sender has one <r/> in
// flight, plus one only when the delay rule needs it.
func TestOneRequestOutstanding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		for i := range 100 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		if _, rs, _, _ := srv.snapshot(); rs != 1 {
			t.Fatalf("%d <r/> in flight after a burst, want 1", rs)
		}
		// Stanzas written after the first <r/> (how many depends on
		// scheduling) get a second one after AckDelay, not before.
		st.mu.Lock()
		uncovered := st.conn.sinceReq
		st.mu.Unlock()
		want := 1
		if uncovered > 0 {
			want = 2
		}
		time.Sleep(DefaultAckDelay - time.Millisecond)
		synctest.Wait()
		if _, rs, _, _ := srv.snapshot(); rs != 1 {
			t.Fatalf("%d <r/> before AckDelay, want 1", rs)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if _, rs, _, _ := srv.snapshot(); rs != want {
			t.Fatalf("%d <r/> after AckDelay, want %d (%d stanzas uncovered)", rs, want, uncovered)
		}
		st.mu.Lock()
		uncovered = st.conn.sinceReq
		st.mu.Unlock()
		if uncovered != 0 {
			t.Fatalf("%d stanzas not covered by an <r/>", uncovered)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if _, rs, _, _ := srv.snapshot(); rs != want {
			t.Fatalf("%d <r/> while idle, want %d", rs, want)
		}
		srv.releaseR()
		waitEvents(t, rec, 100)
		time.Sleep(time.Second)
		synctest.Wait()
		if _, rs, _, _ := srv.snapshot(); rs != want {
			t.Fatalf("%d <r/> after all acks, want %d", rs, want)
		}
		c.close()
	})
}

// TestReRequestAfterPartialAck: an answer that leaves covered stanzas
// unacknowledged leads to one more request.
func TestReRequestAfterPartialAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		first := true
		srv.rReply = func(h uint32) string {
			if first {
				first = false
				h--
			}
			return `<a xmlns='urn:xmpp:sm:3' h='` + strconv.FormatUint(uint64(h), 10) + `'/>`
		}
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		sendMsg(t, st, c.sess, "m1")
		if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"acked:m0", "acked:m1"}) {
			t.Fatal(evs)
		}
		if _, rs, _, _ := srv.snapshot(); rs != 2 {
			t.Fatalf("%d requests", rs)
		}
		c.close()
	})
}

// burst sends n messages through the scripted server, one every gap (0:
// as fast as possible), the server answering each <r/> after rtt, and
// returns the number of <r/> it received once everything was
// acknowledged.
func burst(t testing.TB, n int, gap, rtt time.Duration) (requests int) {
	srv := newFakeServer(t)
	srv.rtt = rtt
	rec := newRecorder()
	st := New(rec.config(Config{}))
	c := mustDial(t, srv, st, nil)
	for i := range n {
		if gap > 0 && i > 0 {
			time.Sleep(gap)
		}
		sendMsg(t, st, c.sess, strconv.Itoa(i))
	}
	for i := range n {
		if ev := <-rec.ch; ev != "acked:"+strconv.Itoa(i) {
			t.Fatalf("ack %d: %s", i, ev)
		}
	}
	_, requests, _, _ = srv.snapshot()
	c.close()
	return requests
}

// TestBurstAckRequests counts the <r/> for 5,000 messages written one per
// 50 µs: with answers in 100 µs (2 stanzas per round trip) the count rule
// binds, at most one per AckEvery stanzas; with answers in 1 ms (20 per
// round trip) one request in flight binds, one per round trip.
//
// The sender and the server run on synthetic time, so the count does not
// depend on the scheduler. Against a server that answers at once, it
// would: each time the answers overtake the writer, the queue empties and
// the next stanza finds an idle link, which rightly requests at once
// (BenchmarkBurst measures that case in real time).
func TestBurstAckRequests(t *testing.T) {
	const n, gap = 5000, 50 * time.Microsecond
	for _, tc := range []struct {
		name string
		rtt  time.Duration
		most int
	}{
		{"count", 100 * time.Microsecond, n/DefaultAckEvery + 1},
		{"in-flight", time.Millisecond, n/int(time.Millisecond/gap) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs int
			synctest.Test(t, func(t *testing.T) { rs = burst(t, n, gap, tc.rtt) })
			t.Logf("%d messages, answers in %v: %d <r/> (one per %.1f stanzas)", n, tc.rtt, rs, float64(n)/float64(rs))
			if rs > tc.most {
				t.Errorf("%d <r/> for %d stanzas, want at most %d", rs, n, tc.most)
			}
		})
	}
}

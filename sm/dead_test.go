package sm

import (
	"encoding/xml"
	"errors"
	"fmt"
	"mellium.im/xmpp/stream"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// waitServed waits until the client's Serve returned, then closes the
// server's side (a dead link is never closed by the peer) and returns
// Serve's error.
func (c *client) waitServed() error {
	<-c.served
	c.sc.conn.Close()
	c.conn.Close()
	<-c.sc.done
	return c.serveEr
}

// TestDeadConnectionDetected: the link freezes (no FIN, no RST) while an
// <r/> is on its way; the connection is declared dead exactly when it is
// overdue, Serve returns ErrAckTimeout, and the next connection resumes
// the stream and retransmits what was not acknowledged.
//
//   - swallowed: the server's end takes every byte and answers nothing
//     (the <r/> fits in the send buffer of a frozen TCP link): dead once
//     the written <r/> has been unanswered for AckTimeout plus four
//     smoothed round trips;
//   - stuck: the server's end takes nothing more, so the <r/> never gets
//     out (a full send buffer): dead once it has waited for the write
//     bound, stuckWriteFactor times AckTimeout (where the kernel has
//     TCP_USER_TIMEOUT, it usually ends such a write sooner; a pipe has
//     none).
func TestDeadConnectionDetected(t *testing.T) {
	for _, stuck := range []bool{false, true} {
		for _, rtt := range []time.Duration{0, 200 * time.Millisecond} {
			name := map[bool]string{false: "swallowed", true: "stuck"}[stuck] + "/" + rtt.String()
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					testDeadConnection(t, stuck, rtt)
				})
			})
		}
	}
}

// measured dials a State with an AckTimeout of 2 s to a server that
// answers <r/> after rtt, and exchanges a few round trips for the State
// to measure (in a synctest bubble).
func measured(t *testing.T, rtt time.Duration) (*fakeServer, *recorder, *State, *client) {
	t.Helper()
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
	return srv, rec, st, c
}

func testDeadConnection(t *testing.T, stuck bool, rtt time.Duration) {
	srv, rec, st, c := measured(t, rtt)
	st.mu.Lock()
	srtt := time.Duration(st.srtt)
	st.mu.Unlock()
	if srtt != rtt {
		t.Fatalf("smoothed rtt %v, want %v", srtt, rtt)
	}
	// The server waits in a read, which takes the next write (the frozen
	// message); when stuck, the <r/> the requester writes after it then
	// blocks on the pipe, a durable block, and fake time goes on. Without
	// this the server could reach its read only after the freeze and read
	// nothing: the message's write blocked on the pipe while the requester
	// waited for mellium's output lock, and synctest does not advance time
	// while a goroutine waits for a mutex, so the test hung (CI at 20:17,
	// TestDeadConnectionDetected/0s).
	synctest.Wait()
	want := 2*time.Second + 4*rtt
	if stuck {
		c.sc.conn.freeze()
		want = stuckWriteFactor * 2 * time.Second
	} else {
		c.sc.conn.swallowAll()
	}
	start := time.Now()
	sendMsg(t, st, c.sess, "frozen1")
	err := c.waitServed()
	var ae *AckTimeoutError
	if !errors.As(err, &ae) {
		t.Fatalf("Serve: %v, want an *AckTimeoutError", err)
	}
	// The <r/> is booked with the stanza (the link was idle).
	if d := time.Since(start); d != want || ae.Bound != want || ae.Waited != want {
		t.Errorf("detected after %v, error %v; want %v", d, ae, want)
	}
	if !st.Info().Resumable {
		t.Fatal("a dead connection must stay resumable")
	}
	c = mustDial(t, srv, st, nil)
	if !st.Resumed() {
		t.Fatal("not resumed")
	}
	if ev := rec.next(t); ev != "acked:frozen1" {
		t.Fatalf("got %s, want acked:frozen1", ev)
	}
	c.close()
}

// TestDeadWhileWriterBlocked: the link freezes under a burst, so the
// requester itself is stuck writing (behind a blocked writer holding
// mellium's output lock); the watchdog still ends the connection, by the
// write bound (a pipe has no TCP_USER_TIMEOUT), and the blocked writer
// fails. Real time: synctest does not advance while a goroutine waits for
// a mutex.
//
//   - counted: the frozen server's read under way takes a first stanza,
//     which is counted; the <r/> it calls for is booked, then waits for
//     mellium's output behind the burst's first stanza, blocked on the
//     pipe (or blocks on the pipe itself). It never gets out: the write
//     bound runs from that booking.
//   - uncounted: bytes outside any stanza take that read, so the burst's
//     very first write blocks and nothing is ever counted: no request rule
//     fires, and only the idle probe finds the connection dead (see "Dead
//     connections": the State cannot tell that write from a slow one).
//
// Each waits for the server's read to be under way before the freeze, so
// that the case is the one named. (The stress run that "hung after 89
// passes" with -count 300 -cpu 1,2,4 -timeout 45s had only run out of
// time: 89 runs of 0.5 s, the bound this test then used.)
func TestDeadWhileWriterBlocked(t *testing.T) {
	for _, counted := range []bool{true, false} {
		name := map[bool]string{true: "counted", false: "uncounted"}[counted]
		t.Run(name, func(t *testing.T) {
			// Real time, and a short bound (the test runs thousands of
			// times under stress): on a loaded machine it may end the
			// connection before the freeze (Start's write of <enable/>
			// included), which is a dead connection too; then the test
			// starts over.
			var st *State
			var c *client
			for attempt := 1; ; attempt++ {
				if attempt > 20 {
					t.Fatal("20 connections were taken for dead before <enabled/>")
				}
				probe := time.Hour
				if !counted {
					probe = 5 * time.Millisecond
				}
				st = New(Config{AckTimeout: 10 * time.Millisecond, IdleProbe: probe})
				var err error
				if c, err = dial(t, newFakeServer(t), st, nil); err != nil {
					t.Logf("dial: %v; starting over", err)
					continue
				}
				if err = st.WaitEnabled(t.Context()); err == nil && c.sc.conn.waitInRead(c.served) {
					break
				}
				if err := c.waitServed(); !errors.Is(err, ErrAckTimeout) {
					t.Fatalf("WaitEnabled or the server's read failed, Serve: %v", err)
				}
				t.Log("the connection was taken for dead before the freeze; starting over")
			}
			c.sc.conn.freeze()
			if counted {
				// Taken by the read under way, and counted. (Written here
				// rather than by the burst: AckTimeout after the burst's
				// Reserve, the probe could be written first.)
				if err := c.sess.Send(t.Context(), msgReader("first")); err != nil {
					t.Fatal(err)
				}
			} else {
				// Taken by the read under way, and discarded; not seen by
				// the tees. (Unless an idle probe's <r/> was written
				// first: this write then blocks too, until the
				// connection is found dead, and fails.)
				c.conn.Write([]byte(" "))
			}
			sent := make(chan error, 1)
			go func() {
				var err error
				for i := 0; err == nil; i++ {
					var slot Slot
					if slot, err = st.Reserve(t.Context()); err == nil {
						err = c.sess.Send(t.Context(), msgReader(fmt.Sprint("b", i)))
						slot.Release()
					}
				}
				sent <- err
			}()
			select {
			case <-c.served:
			case <-time.After(30 * time.Second): // a guard, not a measure: the bounds are 0.25 s at most
				st.mu.Lock()
				info := fmt.Sprintf("outH %d rSent %d aRecv %d rWait %d watchArmed %v",
					st.outH, st.conn.rSent, st.conn.aRecv, st.conn.rWait, st.conn.watchArmed)
				st.mu.Unlock()
				c.sc.conn.Close()
				c.conn.Close()
				t.Fatalf("the frozen connection was not found dead: %s", info)
			}
			err := c.waitServed()
			if !errors.Is(err, ErrAckTimeout) {
				t.Fatalf("Serve: %v", err)
			}
			if err := <-sent; err == nil {
				t.Fatal("the blocked writer did not fail")
			}
			st.mu.Lock()
			outH := st.outH
			st.mu.Unlock()
			if want := map[bool]uint32{true: 1, false: 0}[counted]; outH != want {
				t.Errorf("%d stanzas counted, want %d", outH, want)
			}
		})
	}
}

// TestAckProgressKeepsConnection: a slow server that answers each <r/>
// late, but answers, is never declared dead, even when the total wait
// for the oldest request exceeds the bound.
func TestAckProgressKeepsConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: time.Second, AckEvery: 1}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for i := range 5 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		// Release one answer per 900 ms: each <a/> restarts the bound.
		for range 5 {
			time.Sleep(900 * time.Millisecond)
			srv.mu.Lock()
			srv.held--
			h := srv.inH
			srv.mu.Unlock()
			c.sc.raw(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h))
			synctest.Wait()
		}
		select {
		case <-c.served:
			t.Fatalf("connection ended: %v", c.serveEr)
		default:
		}
		c.close()
	})
}

// TestIdleProbe: an idle connection is probed after IdleProbe, and a
// dead idle connection is found IdleProbe plus AckTimeout after the last
// exchange.
func TestIdleProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		st := New(Config{IdleProbe: 10 * time.Second, AckTimeout: 3 * time.Second})
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for i := 1; i <= 3; i++ {
			time.Sleep(10 * time.Second)
			synctest.Wait()
			if _, rs, _, _ := srv.snapshot(); rs != i {
				t.Fatalf("after %d idle periods: %d <r/>, want %d", i, rs, i)
			}
		}
		c.sc.conn.freeze()
		start := time.Now()
		err := c.waitServed()
		if !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v", err)
		}
		if d := time.Since(start); d != 13*time.Second {
			t.Errorf("idle dead link found after %v, want 13s", d)
		}
	})
}

// TestEnableUnanswered: a server that never answers <enable/> is dead
// after AckTimeout; WaitEnabled returns ErrConnEnded.
func TestEnableUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.holdEnabled = true
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		start := time.Now()
		if err := st.WaitEnabled(t.Context()); !errors.Is(err, ErrConnEnded) {
			t.Fatalf("WaitEnabled: %v", err)
		}
		if d := time.Since(start); d != DefaultAckTimeout {
			t.Errorf("after %v", d)
		}
		if err := c.waitServed(); !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v", err)
		}
	})
}

// TestNoAckAfterResumption: a resumed stream on which the server
// acknowledges nothing (Prosody 0.12 feeding it to a corrupt parser) is a
// failed resumption: the next connection binds a new session and the
// messages are re-sent under the Resend policy.
func TestNoAckAfterResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		srv.lose = func(string) bool { return true } // swallowed, as by a corrupt parser
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait()
		c.drop()
		c = mustDial(t, srv, st, nil)
		if !st.Resumed() {
			t.Fatal("not resumed")
		}
		if err := c.waitServed(); !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v", err)
		}
		if st.Info().Resumable {
			t.Fatal("the stream is still resumable")
		}
		srv.mu.Lock()
		srv.holdR, srv.lose = false, nil
		srv.mu.Unlock()
		resumes := srv.resumes
		c = mustDial(t, srv, st, nil)
		if st.Resumed() || srv.resumes != resumes {
			t.Fatal("resumed again")
		}
		if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"resent:m0", "acked:m0"}) {
			t.Fatal(evs)
		}
		c.close()
	})
}

// TestStreamErrorAfterResumption: a parse or size stream error on a
// resumed stream before any ack is a failed resumption, not a refusal:
// the messages are re-sent on a new session, nothing is refused.
func TestStreamErrorAfterResumption(t *testing.T) {
	for _, cond := range []string{"not-well-formed", "policy-violation", "stanza-too-big"} {
		t.Run(cond, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				holdAcks(srv)
				srv.lose = func(string) bool { return true } // swallowed, as by a corrupt parser
				rec := newRecorder()
				refused := 0
				cfg := rec.config(Config{})
				cfg.OnRefused = func(Stanza, error) { refused++ }
				st := New(cfg)
				c := mustDial(t, srv, st, nil)
				synctest.Wait()
				sendMsg(t, st, c.sess, "m0")
				synctest.Wait()
				c.drop()
				c = mustDial(t, srv, st, nil)
				if !st.Resumed() {
					t.Fatal("not resumed")
				}
				synctest.Wait()
				c.sc.raw(`<stream:error><` + cond + ` xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
				c.sc.conn.closeWhenDrained()
				c.waitServed()
				if st.Info().Resumable {
					t.Fatal("the stream is still resumable")
				}
				srv.mu.Lock()
				srv.holdR, srv.lose = false, nil
				srv.mu.Unlock()
				c = mustDial(t, srv, st, nil)
				if st.Resumed() {
					t.Fatal("resumed again")
				}
				if evs := waitEvents(t, rec, 2); !slices.Equal(evs, []string{"resent:m0", "acked:m0"}) {
					t.Fatal(evs)
				}
				if refused != 0 {
					t.Fatalf("%d refused", refused)
				}
				c.close()
			})
		})
	}
}

// msgReader returns a chat message with the given id.
func msgReader(id string) xml.TokenReader {
	raw := fmt.Sprintf(`<message xmlns='jabber:client' to='peer@example.org' id='%s' type='chat'><body>hi %s</body></message>`, id, id)
	return xml.NewDecoder(strings.NewReader(raw))
}

// TestPolicyViolationPinned: a policy-violation stream error makes no
// message fail by itself. The unacknowledged messages are re-sent one at
// a time on a new stream; the one the server refuses again while it is
// the only one in flight is refused (OnRefused), the others are
// acknowledged, and nothing is re-sent a third time.
func TestPolicyViolationPinned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		cfg := rec.config(Config{})
		var refusedErr error
		cfg.OnRefused = func(s Stanza, err error) {
			refusedErr = err
			rec.ch <- "refused:" + s.ID
		}
		st := New(cfg)
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		for _, id := range []string{"m0", "m1", "m2"} {
			sendMsg(t, st, c.sess, id)
		}
		synctest.Wait()
		c.sc.raw(`<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`)
		c.sc.conn.closeWhenDrained()
		if err := c.waitServed(); !errors.Is(err, stream.PolicyViolation) {
			t.Fatalf("Serve: %v", err)
		}
		srv.mu.Lock()
		srv.holdR = false
		refusals := 0
		srv.refuse = func(g got) bool {
			if g.id == "m1" {
				refusals++
				return true
			}
			return false
		}
		srv.mu.Unlock()

		c = mustDial(t, srv, st, nil)
		if st.Resumed() {
			t.Fatal("resumed a stream the server closed")
		}
		want := []string{"resent:m0", "acked:m0", "resent:m1"}
		if evs := waitEvents(t, rec, len(want)); !slices.Equal(evs, want) {
			t.Fatalf("second stream: %v, want %v", evs, want)
		}
		c.waitServed()
		// The refusal is settled with the queue, when the next
		// connection starts.
		c = mustDial(t, srv, st, nil)
		want = []string{"refused:m1", "resent:m2", "acked:m2"}
		if evs := waitEvents(t, rec, len(want)); !slices.Equal(evs, want) {
			t.Fatalf("third stream: %v, want %v", evs, want)
		}
		synctest.Wait()
		if !errors.Is(refusedErr, stream.PolicyViolation) {
			t.Errorf("refused with %v", refusedErr)
		}
		if info := st.Info(); info.Unacked != 0 {
			t.Errorf("%+v", info)
		}
		if refusals != 1 || rec.ids("lost") != nil {
			t.Errorf("m1 refused %d times on the wire; lost: %v", refusals, rec.ids("lost"))
		}
		c.close()
	})
}

// TestCallbacksMayCallState: callbacks run without any lock of the
// package, so OnLost may call Abandon (and OnAcked may call Info) without
// deadlocking, and the events such a call causes still run in order.
func TestCallbacksMayCallState(t *testing.T) {
	srv := newFakeServer(t)
	holdAcks(srv)
	var st *State
	var mu sync.Mutex
	var events []string
	st = New(Config{
		OnAcked: func(s Stanza) {
			st.Info()
		},
		OnLost: func(s Stanza) {
			mu.Lock()
			events = append(events, "lost:"+s.ID)
			mu.Unlock()
			st.Abandon()
			st.Info()
		},
	})
	c := mustDial(t, srv, st, nil)
	if err := st.WaitEnabled(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m0", "m1", "m2"} {
		sendMsg(t, st, c.sess, id)
	}
	c.drop()
	done := make(chan struct{})
	go func() {
		st.Abandon()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Abandon called from OnLost deadlocked")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"lost:m0", "lost:m1", "lost:m2"}; !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
}

// TestFakeServerIgnoresCutStanza: the scripted server neither handles
// nor counts a stanza whose bytes end in the middle (a connection cut
// mid-write, from either side), as a real server does not: its h would
// otherwise claim a stanza the client never finished writing.
func TestFakeServerIgnoresCutStanza(t *testing.T) {
	for _, clientFirst := range []bool{false, true} {
		t.Run(map[bool]string{false: "server closes", true: "client closes"}[clientFirst], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				st := New(Config{})
				c := mustDial(t, srv, st, nil)
				synctest.Wait()
				sendMsg(t, st, c.sess, "whole")
				synctest.Wait()
				c.conn.Write([]byte(`<message xmlns='jabber:client' to='peer@example.org' id='cut' type='chat'><body>hal`))
				synctest.Wait()
				if clientFirst {
					c.conn.Close()
					synctest.Wait()
				}
				c.drop()
				srv.mu.Lock()
				inH := srv.inH
				srv.mu.Unlock()
				if ids := srv.ids(); !slices.Equal(ids, []string{"whole"}) || inH != 1 {
					t.Fatalf("the server handled %v (h %d), want [whole] (h 1)", ids, inH)
				}
			})
		})
	}
}

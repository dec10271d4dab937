package sm

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// servedSoon is waitServed, failing the test if Serve has not returned
// within an hour (of the bubble's time): a connection that is never taken
// for dead would otherwise keep the bubble's clock running for ever.
func (c *client) servedSoon(t *testing.T) error {
	t.Helper()
	select {
	case <-c.served:
	case <-time.After(time.Hour):
		t.Fatal("the connection was not taken for dead within an hour")
	}
	return c.waitServed()
}

// TestStaleAnswersEndConnection: a server that answers every <r/> but
// whose h stops short of the stanzas written before it (it lost them, or
// its parser swallowed them) makes no progress: its answers do not
// restart the ack bound, so the connection is taken for dead once the
// first <r/> that its answers do not cover has waited for the bound, as if
// unanswered. (Each answer once restarted the bound, and the sender
// stalled for good with the queue and the window full.) The next
// connection resumes, and the stanzas <resumed h> does not cover are
// retransmitted.
func TestStaleAnswersEndConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.lose = func(id string) bool { return strings.HasPrefix(id, "x") } // dropped, uncounted
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "m0")
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatalf("event %s", ev)
		}
		start := time.Now()
		for i := range 3 {
			sendMsg(t, st, c.sess, fmt.Sprint("x", i))
		}
		bound := st.Info().AckBound
		err := c.servedSoon(t)
		var ate *AckTimeoutError
		if !errors.As(err, &ate) {
			t.Fatalf("Serve: %v, want an *AckTimeoutError", err)
		}
		if d := time.Since(start); d != bound {
			t.Errorf("ended after %v, want the ack bound %v", d, bound)
		}
		_, rs, _, _ := srv.snapshot()
		if rs < 2 {
			t.Errorf("the server answered %d <r/>, want stale answers after m0's", rs)
		}
		if got := rec.ids("acked"); len(got) != 1 {
			t.Errorf("acked %v", got)
		}

		srv.mu.Lock()
		srv.lose = nil
		srv.mu.Unlock()
		c = mustDial(t, srv, st, nil)
		for i := range 3 {
			if ev := rec.next(t); ev != fmt.Sprintf("acked:x%d", i) {
				t.Fatalf("event %d: %s", i, ev)
			}
		}
		if !st.Resumed() {
			t.Error("the stream was not resumed")
		}
		c.close()
	})
}

// TestStaleAnswersFailResumption: on a resumed connection, answers that
// never cover what was written (the retransmissions) are no ack: the
// connection dies of the ack bound as a failed resumption, and the next
// one binds a new session and re-sends the messages, instead of resuming
// the same broken stream over and over.
func TestStaleAnswersFailResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.lose = func(id string) bool { return id == "m0" }
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "m0")
		if err := c.servedSoon(t); !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v, want ErrAckTimeout", err)
		}
		c = mustDial(t, srv, st, nil) // resumed; m0 is retransmitted and lost again
		if !st.Resumed() {
			t.Fatal("the stream was not resumed")
		}
		if err := c.servedSoon(t); !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v, want ErrAckTimeout", err)
		}
		if info := st.Info(); info.Resumable {
			t.Errorf("after stale answers only on a resumed connection: %+v, want a failed resumption", info)
		}
		srv.mu.Lock()
		srv.lose = nil
		srv.mu.Unlock()
		c = mustDial(t, srv, st, nil)
		if ev := rec.next(t); ev != "resent:m0" {
			t.Fatalf("event %s", ev)
		}
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatalf("event %s", ev)
		}
		c.close()
	})
}

// TestLateAnswersNotStale: a correct server's answer counts what it read
// before the <r/>, never what was written after it. Answers that come
// late, behind stanzas written after their <r/>, and unsolicited <a/> that
// repeat an old h meanwhile, are not taken for stale answers: the
// connection stays up and everything is acknowledged.
func TestLateAnswersNotStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		srv.rtt = 3 * time.Second // more than half the bound, less than it
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		const n = 40
		for i := range n {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
			time.Sleep(100 * time.Millisecond) // the application's pace
			if i%4 == 0 {
				c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='0'/>`) // unsolicited, old
			}
		}
		for i := range n {
			if ev := rec.next(t); ev != fmt.Sprintf("acked:m%d", i) {
				t.Fatalf("event %d: %s", i, ev)
			}
		}
		select {
		case <-c.served:
			t.Fatalf("the connection ended: %v", c.serveEr)
		default:
		}
		c.close()
	})
}

// TestUnsolicitedStaleAckKeepsBound: an unsolicited <a/> that acknowledges
// nothing new while an <r/> is unanswered is not its answer: the bound of
// that <r/> runs on, and a server that never answers it is found within
// the bound. (It once cleared the bound, and the link was found dead only
// after the idle probe's own bound.)
func TestUnsolicitedStaleAckKeepsBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		rec := newRecorder()
		st := New(rec.config(Config{}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		start := time.Now()
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait() // its <r/> is written, and held
		c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='0'/>`)
		bound := st.Info().AckBound
		err := c.servedSoon(t)
		if !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v, want ErrAckTimeout", err)
		}
		if d := time.Since(start); d != bound {
			t.Errorf("ended after %v, want the ack bound %v", d, bound)
		}
	})
}

// TestStaleAckBeforeRequestWritten: a stale <a/> read while our <r/> is
// booked but not written yet (it waits for mellium's output behind a
// large write on a slow link) starts no ack bound: the bound of that
// request starts when it is written. It started at the <a/>, and as the
// <a/> used up the booking in the answer count, the write did not restart
// it: a slow but working link was cut one bound later.
func TestStaleAckBeforeRequestWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: time.Second}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "m0")
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatalf("event %s", ev)
		}
		booked, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		st.bookedHook = func() {
			once.Do(func() {
				close(booked)
				<-release
			})
		}
		sendMsg(t, st, c.sess, "m1")
		<-booked                                     // m1's <r/> is booked, not written
		c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='1'/>`) // unsolicited, the last h again
		synctest.Wait()
		time.Sleep(3 * st.Info().AckBound) // the request still waits to get out
		synctest.Wait()
		select {
		case <-c.served:
			t.Fatalf("the connection ended before its <r/> was written: %v", c.serveEr)
		default:
		}
		close(release)
		if ev := rec.next(t); ev != "acked:m1" {
			t.Fatalf("event %s", ev)
		}
		select {
		case <-c.served:
			t.Fatalf("the connection ended: %v", c.serveEr)
		default:
		}
		c.close()
	})
}

// TestStaleAckBeforeRequestWrittenUnanswered: the same, with the server
// answering nothing once the <r/> is written: the bound starts at the
// write, and the connection ends one bound after it.
func TestStaleAckBeforeRequestWrittenUnanswered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		rec := newRecorder()
		st := New(rec.config(Config{AckTimeout: time.Second}))
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		sendMsg(t, st, c.sess, "m0")
		if ev := rec.next(t); ev != "acked:m0" {
			t.Fatalf("event %s", ev)
		}
		holdAcks(srv)
		booked, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		st.bookedHook = func() {
			once.Do(func() {
				close(booked)
				<-release
			})
		}
		sendMsg(t, st, c.sess, "m1")
		<-booked
		c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
		synctest.Wait()
		time.Sleep(2 * time.Second)
		bound := st.Info().AckBound
		written := time.Now()
		close(release)
		if err := c.servedSoon(t); !errors.Is(err, ErrAckTimeout) {
			t.Fatalf("Serve: %v, want ErrAckTimeout", err)
		}
		if d := time.Since(written); d != bound {
			t.Errorf("ended %v after the <r/> was written, want the ack bound %v", d, bound)
		}
	})
}

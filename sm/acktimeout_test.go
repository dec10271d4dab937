package sm

import (
	"errors"
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
		_, _, st, c := measured(t, rtt)
		want := 2*time.Second + 4*rtt
		if b := st.Info().AckBound; b != want {
			t.Fatalf("Info.AckBound %v, want %v", b, want)
		}
		synctest.Wait() // the server waits in a read (see TestDeadConnectionDetected)
		c.sc.conn.swallowAll()
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

// TestAnswerAtDeadline: an <a/> that arrives while the watchdog is ending
// the connection is handled after it: the watchdog decides and records
// the death under one lock, so the error still carries how long the
// answer had been awaited (at least the bound), not the nothing the
// handled <a/> would leave. Real time: the handler waits for the State's
// mutex, on which synctest does not advance.
func TestAnswerAtDeadline(t *testing.T) {
	srv := newFakeServer(t)
	holdAcks(srv)
	var st *State
	var c *client
	for attempt := 1; ; attempt++ {
		if attempt > 20 {
			t.Fatal("20 connections were taken for dead before <enabled/>")
		}
		st = New(Config{AckTimeout: 50 * time.Millisecond, IdleProbe: time.Hour})
		var err error
		if c, err = dial(t, srv, st, nil); err != nil {
			continue
		}
		if st.WaitEnabled(t.Context()) == nil {
			break
		}
		c.waitServed()
	}
	st.mu.Lock()
	st.overdueHook = func() {
		// The answer comes now. The pause is only a margin, not a wait
		// for an event: with the decision and the death under one lock
		// the outcome does not depend on it (the reader waits for the
		// lock); with two, it gives the reader the time to handle the
		// <a/> in between.
		go c.sc.raw(`<a xmlns='urn:xmpp:sm:3' h='1'/>`)
		time.Sleep(50 * time.Millisecond)
	}
	st.mu.Unlock()
	sendMsg(t, st, c.sess, "m0")
	err := c.waitServed()
	var ae *AckTimeoutError
	if !errors.As(err, &ae) {
		t.Fatalf("Serve: %v, want an *AckTimeoutError", err)
	}
	if ae.Waited < ae.Bound {
		t.Errorf("waited %v, less than the bound %v", ae.Waited, ae.Bound)
	}
}

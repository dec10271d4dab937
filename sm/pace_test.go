package sm

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestPaceWaitsForWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: 3})
		c := mustDial(t, srv, st, nil)
		for i := range 2 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		if err := st.Pace(t.Context()); err != nil {
			t.Fatalf("Pace with room in the window: %v", err)
		}
		sendMsg(t, st, c.sess, "m2")
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := st.Pace(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pace on a full window: %v", err)
		}
		if err := st.Reserve(t.Context()); err != nil {
			t.Fatalf("Reserve is bounded by MaxUnacked, not the window: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- st.Pace(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Pace returned before an ack: %v", err)
		default:
		}
		srv.releaseR()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c.close()
	})
}

func TestPaceDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: -1})
		c := mustDial(t, srv, st, nil)
		for i := range DefaultWindow + 1 {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		if err := st.Pace(t.Context()); err != nil {
			t.Fatalf("Pace without a window: %v", err)
		}
		c.close()
	})
}

func TestPaceReturnsWhenConnectionEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: 1})
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait() // <enabled/> processed: the window applies
		done := make(chan error, 1)
		go func() { done <- st.Pace(context.Background()) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Pace returned before an ack: %v", err)
		default:
		}
		c.drop()
		if err := <-done; err != nil {
			t.Fatalf("Pace after the connection ended: %v", err)
		}
	})
}

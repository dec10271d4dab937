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

// answerHeld answers the <r/>s held so far with the current count and
// keeps holding the ones that follow (releaseR stops holding).
func answerHeld(srv *fakeServer) {
	srv.mu.Lock()
	n := srv.held
	srv.held = 0
	h := srv.inH
	sc := srv.cur
	srv.mu.Unlock()
	for range n {
		sc.raw(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, h))
	}
}

// paceSender writes messages through Pace until ctx ends, as Send does.
func paceSender(ctx context.Context, t *testing.T, st *State, c *client) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			if st.Pace(ctx) != nil || ctx.Err() != nil {
				return
			}
			sendMsg(t, st, c.sess, fmt.Sprint("p", i))
		}
	}()
	return done
}

// TestPaceAdapts: answers that come 50 ms or more later than the
// quickest one shrink the window, by half per answer at most, down to
// 2×AckEvery; quick answers while the window is full grow it back, by a
// quarter per answer, up to Config.Window.
func TestPaceAdapts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: 100})
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "lone")
		synctest.Wait()
		answerHeld(srv) // answered at once: the quickest round trip
		synctest.Wait()
		if w := st.Info().Window; w != 100 {
			t.Fatalf("window %d after a quick answer with the window not full, want 100", w)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := paceSender(ctx, t, st, c)
		var got []int
		for range 5 {
			synctest.Wait() // the window is full, an <r/> waits
			time.Sleep(200 * time.Millisecond)
			answerHeld(srv)
			synctest.Wait()
			got = append(got, st.Info().Window)
		}
		if want := []int{50, 25, 16, 16, 16}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("windows after answers 200 ms late: %v, want %v", got, want)
		}
		got = got[:0]
		for range 12 {
			synctest.Wait()
			time.Sleep(time.Millisecond)
			answerHeld(srv)
			synctest.Wait()
			got = append(got, st.Info().Window)
		}
		if want := []int{20, 25, 31, 39, 49, 61, 76, 95, 100, 100, 100, 100}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("windows after quick answers with the window full: %v, want %v", got, want)
		}
		cancel()
		srv.releaseR()
		<-done
		c.close()
	})
}

// TestPaceConstantDelay: a long round trip that does not grow with what
// is in flight (a distant server) leaves the window whole.
func TestPaceConstantDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := paceSender(ctx, t, st, c)
		for range 6 {
			synctest.Wait()
			time.Sleep(300 * time.Millisecond)
			answerHeld(srv)
			synctest.Wait()
			if w := st.Info().Window; w != DefaultWindow {
				t.Fatalf("window %d with every answer 300 ms late, want %d", w, DefaultWindow)
			}
		}
		cancel()
		srv.releaseR()
		<-done
		c.close()
	})
}

// TestPaceNoGrowthWhenNotFull: quick answers do not grow a window that a
// slow sender never fills, so that a later burst does not start with a
// window the server never showed it could take.
func TestPaceNoGrowthWhenNotFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: 64})
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "lone")
		synctest.Wait()
		answerHeld(srv)
		sendMsg(t, st, c.sess, "late")
		synctest.Wait()
		time.Sleep(200 * time.Millisecond)
		answerHeld(srv)
		synctest.Wait()
		if w := st.Info().Window; w != 32 {
			t.Fatalf("window %d after a late answer, want 32", w)
		}
		for i := range 5 {
			if err := st.Pace(t.Context()); err != nil {
				t.Fatal(err)
			}
			sendMsg(t, st, c.sess, fmt.Sprint("slow", i))
			synctest.Wait()
			answerHeld(srv)
			synctest.Wait()
		}
		if w := st.Info().Window; w != 32 {
			t.Fatalf("window %d after quick answers to a sender that never filled it, want 32", w)
		}
		c.close()
	})
}

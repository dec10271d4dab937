package sm

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// quickest one shrink a full window, by half per round at most, down to
// 2×AckEvery; quick answers while the window is full grow it back, by a
// quarter per round, up to Config.Window.
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
		for range 3 {
			synctest.Wait() // the window is full, an <r/> waits
			time.Sleep(200 * time.Millisecond)
			answerHeld(srv)
			synctest.Wait()
			got = append(got, st.Info().Window)
		}
		if want := []int{50, 25, 16}; fmt.Sprint(got) != fmt.Sprint(want) {
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
		// The first round on time after one late at the floor looks again.
		if want := []int{16, 20, 25, 31, 39, 49, 61, 76, 95, 100, 100, 100}; fmt.Sprint(got) != fmt.Sprint(want) {
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

// TestPaceOnlyWhenFull: a sender that does not fill the window queues
// nothing up at the server, so late acks do not shrink the window (one
// late ack at a time would ratchet it down) and quick ones do not grow it.
func TestPaceOnlyWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: 64})
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "lone")
		synctest.Wait()
		answerHeld(srv)
		for i := range 4 {
			if err := st.Pace(t.Context()); err != nil {
				t.Fatal(err)
			}
			sendMsg(t, st, c.sess, fmt.Sprint("late", i))
			synctest.Wait()
			time.Sleep(700 * time.Millisecond)
			answerHeld(srv)
			synctest.Wait()
		}
		if w := st.Info().Window; w != 64 {
			t.Fatalf("window %d after late acks of single messages, want 64", w)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := paceSender(ctx, t, st, c)
		for range 2 {
			synctest.Wait()
			time.Sleep(200 * time.Millisecond)
			answerHeld(srv)
		}
		cancel()
		synctest.Wait()
		answerHeld(srv)
		<-done
		synctest.Wait()
		w := st.Info().Window
		if w >= 64 {
			t.Fatalf("window %d after late acks of a full window, want it shrunk", w)
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
		if got := st.Info().Window; got != w {
			t.Fatalf("window %d after quick acks to a sender that never filled it, want %d", got, w)
		}
		c.close()
	})
}

// paceRounds runs a full-window sender for len(delays) rounds, each
// answered delays[i] late, and returns the window after each.
func paceRounds(t *testing.T, st *State, srv *fakeServer, c *client, delays []time.Duration) []int {
	ctx, cancel := context.WithCancel(t.Context())
	done := paceSender(ctx, t, st, c)
	var got []int
	for _, d := range delays {
		synctest.Wait()
		time.Sleep(d)
		answerHeld(srv)
		synctest.Wait()
		got = append(got, st.Info().Window)
	}
	cancel()
	srv.releaseR()
	<-done
	return got
}

// TestPaceRouteChange: the round trip rises for good (a longer route, a
// slower server): the window shrinks to its floor, learns that the delay
// is not its own, and grows back to the maximum.
func TestPaceRouteChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		delays := make([]time.Duration, 60)
		for i := range delays {
			delays[i] = 100 * time.Millisecond
			if i >= 5 {
				delays[i] = 200 * time.Millisecond
			}
		}
		got := paceRounds(t, st, srv, c, delays)
		if slices.Min(got) > 2*DefaultAckEvery {
			t.Errorf("windows %v: want the floor reached once the delay doubled", got)
		}
		if last := got[len(got)-1]; last != DefaultWindow {
			t.Errorf("windows %v: want %d again once the delay is learnt", got, DefaultWindow)
		}
		c.close()
	})
}

// TestPaceJitter: acks 20, 80 and 140 ms late in turn, whatever is in
// flight (a jittery link): the window does not stay collapsed.
func TestPaceJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{})
		c := mustDial(t, srv, st, nil)
		var delays []time.Duration
		for range 30 {
			delays = append(delays, 20*time.Millisecond, 80*time.Millisecond, 140*time.Millisecond)
		}
		got := paceRounds(t, st, srv, c, delays)
		if tail := got[len(got)-9:]; slices.Min(tail) < DefaultWindow/2 {
			t.Errorf("windows %v: want the jitter learnt and at least %d at the end", got, DefaultWindow/2)
		}
		c.close()
	})
}

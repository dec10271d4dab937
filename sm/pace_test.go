package sm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
		slot, err := st.Pace(t.Context())
		if err != nil {
			t.Fatalf("Pace with room in the window: %v", err)
		}
		sendMsg(t, st, c.sess, "m2")
		slot.Release()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := st.Pace(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Pace on a full window: %v", err)
		}
		r, err := st.Reserve(t.Context())
		if err != nil {
			t.Fatalf("Reserve is bounded by MaxUnacked, not the window: %v", err)
		}
		r.Release()
		done := make(chan error, 1)
		go func() {
			_, err := st.Pace(context.Background())
			done <- err
		}()
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
		if slot, err := st.Pace(t.Context()); err != nil || slot != (Slot{}) {
			t.Fatalf("Pace without a window: %v, %v", slot.Held(), err)
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
		go func() {
			_, err := st.Pace(context.Background())
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Pace returned before an ack: %v", err)
		default:
		}
		c.drop()
		if err := <-done; !errors.Is(err, ErrConnEnded) {
			t.Fatalf("Pace after the connection ended: %v, want ErrConnEnded", err)
		}
		if s, err := st.Pace(t.Context()); !errors.Is(err, ErrConnEnded) || s.Held() {
			t.Fatalf("Pace on an ended connection: %v, %v; want ErrConnEnded and no slot", s.Held(), err)
		}
	})
}

// ackHeld answers the <r/>s the server holds with its current count, and
// keeps holding later ones.
func ackHeld(srv *fakeServer) {
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

// slotPool is one of the two pools Slots come from, for table tests.
type slotPool struct {
	name string
	cfg  Config // room places in the pool
	take func(*State, context.Context) (Slot, error)
	used func(*State) (int, *turnstile) // the places taken, and the pool; under st.mu
}

// slotPools returns Pace's window and Reserve's queue, each of room places.
func slotPools(room int) []slotPool {
	return []slotPool{
		{"Pace", Config{Window: room}, (*State).Pace, func(st *State) (int, *turnstile) { return st.queue.len(), &st.pace }},
		{"Reserve", Config{MaxUnacked: room, Window: -1}, (*State).Reserve, func(st *State) (int, *turnstile) { return st.pendingLocked(), &st.reserve }},
	}
}

// eachPool runs f in a synctest bubble for each pool of room places, with
// a State connected to a server that holds its answers to <r/>.
func eachPool(t *testing.T, room int, f func(t *testing.T, tc slotPool, srv *fakeServer, st *State, c *client)) {
	for _, tc := range slotPools(room) {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := newFakeServer(t)
				holdAcks(srv)
				st := New(tc.cfg)
				f(t, tc, srv, st, mustDial(t, srv, st, nil))
			})
		})
	}
}

// TestSlotsHoldForManyWaiters: 30 goroutines waiting together in Pace
// (the window) or in Reserve (the queue, MaxUnacked) are let through only
// as far as an ack makes room, not all at once (Reserve's were until it
// handed out Slots as Pace does).
func TestSlotsHoldForManyWaiters(t *testing.T) {
	const room, senders = 4, 30
	eachPool(t, room, func(t *testing.T, tc slotPool, srv *fakeServer, st *State, c *client) {
		for i := range room {
			sendMsg(t, st, c.sess, fmt.Sprint("m", i))
		}
		synctest.Wait()
		var sent atomic.Int32
		var wg sync.WaitGroup
		for i := range senders {
			wg.Go(func() {
				slot, err := tc.take(st, context.Background())
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
					return
				}
				defer slot.Release()
				if err := c.sess.Send(context.Background(), msgReader(fmt.Sprint("s", i))); err != nil {
					t.Errorf("send: %v", err)
				}
				sent.Add(1)
			})
		}
		synctest.Wait()
		if n := sent.Load(); n != 0 {
			t.Fatalf("%d senders went through when full", n)
		}
		for rounds := 0; sent.Load() < senders; rounds++ {
			if rounds > 4*senders {
				t.Fatalf("stuck after %d of %d senders", sent.Load(), senders)
			}
			before := sent.Load()
			ackHeld(srv)
			synctest.Wait()
			st.mu.Lock()
			used, p := tc.used(st)
			out := p.admitted
			st.mu.Unlock()
			if used+out > room {
				t.Fatalf("%d places taken and %d slots out after an ack, room for %d (%d senders through)", used, out, room, sent.Load())
			}
			if sent.Load() == before {
				time.Sleep(time.Second) // the requester asks for an ack on its timer
				synctest.Wait()
			}
		}
		wg.Wait()
		st.mu.Lock()
		_, p := tc.used(st)
		admitted, waiting := p.admitted, p.live
		st.mu.Unlock()
		if admitted != 0 || waiting != 0 {
			t.Errorf("after all senders: %d slots out, %d waiting", admitted, waiting)
		}
		c.close()
	})
}

// TestPaceSlotAbandoned: a slot given back without a write, and a waiter
// whose ctx ends, leave the window as it was.
func TestPaceSlotAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		st := New(Config{Window: 2})
		c := mustDial(t, srv, st, nil)
		sendMsg(t, st, c.sess, "m0")
		synctest.Wait()
		a, err := st.Pace(t.Context())
		if err != nil || a == (Slot{}) {
			t.Fatalf("Pace with room: %v, %v", a.Held(), err)
		}
		// The window is full: one in flight, one slot out.
		ctx, cancel := context.WithCancel(t.Context())
		gaveUp := make(chan error, 1)
		go func() {
			_, err := st.Pace(ctx)
			gaveUp <- err
		}()
		got := make(chan *Slot, 1)
		go func() {
			s, err := st.Pace(t.Context())
			if err != nil {
				t.Errorf("Pace: %v", err)
			}
			got <- &s
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("Pace went through a full window")
		case err := <-gaveUp:
			t.Fatalf("Pace returned on a full window: %v", err)
		default:
		}
		cancel()
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Fatalf("Pace after its ctx ended: %v", err)
		}
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("a waiter whose ctx ended made room")
		default:
		}
		a.Release() // never written
		a.Release() // again: nothing
		b := <-got
		if _, err := st.Pace(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Pace with an ended ctx on a full window: %v", err)
		}
		b.Release()
		c2, err := st.Pace(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		st.mu.Lock()
		admitted, waiting := st.pace.admitted, st.pace.live
		st.mu.Unlock()
		if admitted != 1 || waiting != 0 {
			t.Errorf("%d slots out, %d waiting; want 1, 0", admitted, waiting)
		}
		c2.Release()
		c.close()
	})
}

// handFirstOfTwo fills the pool p of one place, queues two waiters, and
// gives the place back (hand: paceLocked or reserveLocked), which the
// first waiter must be handed. The caller holds st.mu.
func handFirstOfTwo(t *testing.T, p *turnstile, hand func()) (first, second *waiter) {
	t.Helper()
	p.admitted = 1 // full
	first, second = &waiter{ch: make(chan struct{})}, &waiter{ch: make(chan struct{})}
	p.push(first)
	p.push(second)
	p.admitted--
	hand()
	select {
	case <-first.ch:
	default:
		t.Fatal("the first waiter was not handed the place")
	}
	return first, second
}

// TestPaceSlotHandedOverAsCtxEnds: a slot handed to a waiter whose ctx
// ended at the same moment goes to the next waiter; one handed to a
// waiter whose connection ended is kept.
func TestPaceSlotHandedOverAsCtxEnds(t *testing.T) {
	st := New(Config{Window: 1})
	st.mu.Lock()
	defer st.mu.Unlock()
	p := &st.pace
	first, second := handFirstOfTwo(t, p, st.paceLocked)
	if s, err := st.leavePaceLocked(first, context.Canceled); err != context.Canceled || s.Held() {
		t.Fatalf("leaving with an ended ctx: %v, %v", s.Held(), err)
	}
	select {
	case <-second.ch:
	default:
		t.Fatal("the slot the first waiter left did not go to the second")
	}
	if p.admitted != 1 {
		t.Fatalf("%d slots out, want 1", p.admitted)
	}
	if s, err := st.leavePaceLocked(second, errPaceConnEnded); err != nil || s.p == nil || s.p.st != st {
		t.Fatalf("leaving as the connection ended: %v, %v; want the slot", s.Held(), err)
	}
	if p.admitted != 1 || p.live != 0 {
		t.Fatalf("%d slots out, %d waiting; want 1, 0", p.admitted, p.live)
	}
}

// TestReserveSlotHandedOverAsCtxEnds: a place handed to a Reserve waiter
// whose ctx ended at the same moment goes to the next waiter.
func TestReserveSlotHandedOverAsCtxEnds(t *testing.T) {
	st := New(Config{MaxUnacked: 1})
	st.mu.Lock()
	defer st.mu.Unlock()
	r := &st.reserve
	first, second := handFirstOfTwo(t, r, st.reserveLocked)
	st.leaveReserveLocked(r, first)
	select {
	case <-second.ch:
	default:
		t.Fatal("the place the first waiter left did not go to the second")
	}
	if r.admitted != 1 || r.live != 0 {
		t.Fatalf("%d places out, %d waiting; want 1, 0", r.admitted, r.live)
	}
}

// TestPaceLeaveHandsRoom: a waiter that leaves without a slot hands the
// room there is to the waiters behind it. (Room that came without a call
// of paceLocked, as when a resumption moves the queue to the
// retransmissions, must not wait for the next ack: with nothing in
// flight there is none.)
func TestPaceLeaveHandsRoom(t *testing.T) {
	st := New(Config{Window: 1})
	st.mu.Lock()
	defer st.mu.Unlock()
	p := &st.pace
	stale, next := &waiter{ch: make(chan struct{})}, &waiter{ch: make(chan struct{})}
	p.push(stale)
	p.push(next)
	if s, err := st.leavePaceLocked(stale, errPaceConnEnded); err != errPaceConnEnded || s.Held() {
		t.Fatalf("leaving: %v, %v", s.Held(), err)
	}
	select {
	case <-next.ch:
	default:
		t.Fatal("the room went to nobody")
	}
	if p.admitted != 1 || p.live != 0 || len(p.waiting) != 0 {
		t.Fatalf("%d slots out, %d waiting, list of %d; want 1, 0, 0", p.admitted, p.live, len(p.waiting))
	}
}

// TestPaceWaitingBounded: under sustained saturation (always a waiter)
// the list of waiters does not grow with the number of waits.
func TestPaceWaitingBounded(t *testing.T) {
	st := New(Config{Window: 1})
	st.mu.Lock()
	defer st.mu.Unlock()
	p := &st.pace
	p.admitted = 1
	prev := &waiter{ch: make(chan struct{})}
	p.push(prev)
	for range 10000 {
		w := &waiter{ch: make(chan struct{})}
		p.push(w)
		p.admitted-- // the slot out comes back: prev is handed it
		st.paceLocked()
		select {
		case <-prev.ch:
		default:
			t.Fatal("the waiter first in line was not served")
		}
		prev = w
	}
	if p.live != 1 || cap(p.waiting) > 8 {
		t.Fatalf("%d waiting in a list of capacity %d after 10,000 waits with at most 2 waiting", p.live, cap(p.waiting))
	}
}

// TestSlotsFIFO: callers waiting in Pace, or in Reserve, are admitted in
// the order they came.
func TestSlotsFIFO(t *testing.T) {
	eachPool(t, 1, func(t *testing.T, tc slotPool, srv *fakeServer, st *State, c *client) {
		synctest.Wait() // <enabled/> processed: the window applies
		first, err := tc.take(st, t.Context())
		if err != nil || !first.Held() {
			t.Fatalf("with room: %v, %v", first.Held(), err)
		}
		const n = 20
		order := make(chan int, n)
		for i := range n {
			go func() {
				s, err := tc.take(st, t.Context())
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
				order <- i
				s.Release()
			}()
			synctest.Wait() // waiting: the next one comes after it
		}
		first.Release()
		for want := range n {
			if got := <-order; got != want {
				t.Fatalf("waiter %d admitted in place %d", got, want)
			}
		}
		c.close()
	})
}

// TestPaceSlotCopyReleasedTwice: releasing a copy of a released slot,
// while other slots are out (one on the very place it gave back), is
// caught at that release (logged) and does not widen the window; before,
// it was noticed only once the count would go below zero, which the other
// slots out hid.
func TestPaceSlotCopyReleasedTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newFakeServer(t)
		holdAcks(srv)
		var logs bytes.Buffer
		st := New(Config{Window: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		c := mustDial(t, srv, st, nil)
		synctest.Wait()
		s, err := st.Pace(t.Context())
		if err != nil || !s.Held() {
			t.Fatal(s.Held(), err)
		}
		other, err := st.Pace(t.Context())
		if err != nil || !other.Held() {
			t.Fatal(other.Held(), err)
		}
		cp := Slot{p: s.p, gen: s.gen} // a copy, as cp := s makes it (go vet reports that)
		s.Release()
		a, err := st.Pace(t.Context()) // on the place s gave back
		if err != nil || !a.Held() || a.p != cp.p {
			t.Fatal(a.Held(), err, a.p == cp.p)
		}
		cp.Release() // a misuse: caught, ignored, a keeps its place
		if !strings.Contains(logs.String(), "released twice") {
			t.Errorf("the second release was not reported; log:\n%s", logs.String())
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if b, err := st.Pace(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a third slot in a window of 2: %v, %v", b.Held(), err)
		}
		a.Release()
		other.Release()
		c.close()
	})
}

// TestPaceLeftWaitersReclaimed: callers that leave (their ctx ended)
// behind one that still waits, with no room coming, do not make the list
// grow with their number.
func TestPaceLeftWaitersReclaimed(t *testing.T) {
	st := New(Config{Window: 1})
	st.mu.Lock()
	defer st.mu.Unlock()
	p := &st.pace
	p.admitted = 1
	p.push(&waiter{ch: make(chan struct{})}) // waits on
	for range 10000 {
		w := &waiter{ch: make(chan struct{})}
		p.push(w)
		st.leavePaceLocked(w, context.DeadlineExceeded)
	}
	if p.live != 1 || cap(p.waiting) > 64 {
		t.Errorf("%d waiting in a list of %d entries (capacity %d)", p.live, len(p.waiting), cap(p.waiting))
	}
}

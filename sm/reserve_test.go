package sm

import (
	"context"
	"testing"
	"testing/synctest"
)

// TestReserveAnswersPlaces: ReserveAnswers takes as many places as there
// is room for, up to the number asked, in one Slot that gives them all
// back; a waiting caller is handed as many as the room that came allows.
func TestReserveAnswersPlaces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{MaxUnacked: 4})
		one, err := st.Reserve(t.Context())
		if err != nil || one.Places() != 1 {
			t.Fatalf("Reserve: %d places, %v", one.Places(), err)
		}
		answers, err := st.ReserveAnswers(t.Context(), 10)
		if err != nil || answers.Places() != 4 {
			t.Fatalf("ReserveAnswers(10) with room for 4 (a sender's place does not count): %d places, %v", answers.Places(), err)
		}
		if got := st.Info().Reserved; got != 5 {
			t.Fatalf("%d places reserved, want 5", got)
		}
		got, release := make(chan int), make(chan struct{})
		go func() {
			s, err := st.ReserveAnswers(t.Context(), 2)
			if err != nil {
				t.Error(err)
			}
			got <- s.Places()
			<-release
			s.Release()
			close(got)
		}()
		synctest.Wait()
		answers.Release() // room for 4: the waiter takes the 2 it asked for
		if n := <-got; n != 2 {
			t.Fatalf("the waiter was handed %d places, want 2", n)
		}
		if got := st.Info().Reserved; got != 3 {
			t.Fatalf("%d places reserved, want 3", got)
		}
		close(release)
		<-got
		one.Release()
		if got := st.Info().Reserved; got != 0 {
			t.Fatalf("%d places reserved after every release, want 0", got)
		}
	})
}

// TestReserveAnswersHandedAsCtxEnds: the places handed to a ReserveAnswers
// waiter whose ctx ended at the same moment all come back.
func TestReserveAnswersHandedAsCtxEnds(t *testing.T) {
	st := New(Config{MaxUnacked: 4})
	st.mu.Lock()
	defer st.mu.Unlock()
	r := &st.answers
	w := &waiter{ch: make(chan struct{}), more: 5}
	r.push(w)
	st.reserveLocked()
	if r.admitted != 4 || w.more != 3 {
		t.Fatalf("%d places out, %d more handed; want 4, 3", r.admitted, w.more)
	}
	st.leaveReserveLocked(r, w)
	if r.admitted != 0 || r.live != 0 {
		t.Fatalf("%d places out, %d waiting; want 0, 0", r.admitted, r.live)
	}
}

// TestSlotPlacesReleased: a released Slot holds no place.
func TestSlotPlacesReleased(t *testing.T) {
	st := New(Config{MaxUnacked: 4})
	s, err := st.ReserveAnswers(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	s.Release()
	if s.Places() != 0 || st.Info().Reserved != 0 {
		t.Fatalf("after Release: %d places held, %d reserved", s.Places(), st.Info().Reserved)
	}
}

// waitPlaces starts take in a goroutine and returns the channel that gets
// the Slot's places once it is handed, and the channel that makes the
// goroutine release it; -1 if take failed.
func waitPlaces(t *testing.T, take func() (Slot, error)) (got chan int, release chan struct{}) {
	got, release = make(chan int, 1), make(chan struct{})
	go func() {
		s, err := take()
		if err != nil {
			got <- -1 // the test ended (a test that failed leaves its waiters)
			return
		}
		got <- s.Places()
		select {
		case <-release:
		case <-t.Context().Done(): // the test failed, or ended without it
		}
		s.Release()
	}()
	synctest.Wait()
	return got, release
}

// handed reports the places handed to a waitPlaces goroutine, 0 if none.
func handed(got chan int) int {
	synctest.Wait()
	select {
	case n := <-got:
		return n
	default:
		return 0
	}
}

// TestReserveAnswersSendersFirst: room that comes back goes to the
// senders waiting in Reserve first; the answers waiting get the room that
// does not count the senders' places.
func TestReserveAnswersSendersFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{MaxUnacked: 2})
		full, err := st.ReserveAnswers(t.Context(), 2)
		if err != nil || full.Places() != 2 {
			t.Fatalf("%d places, %v", full.Places(), err)
		}
		sender, releaseSender := waitPlaces(t, func() (Slot, error) { return st.Reserve(t.Context()) })
		answer, releaseAnswer := waitPlaces(t, func() (Slot, error) { return st.ReserveAnswers(t.Context(), 4) })
		full.Release() // room for 2: the sender's place first, both for the answers
		if s, a := handed(sender), handed(answer); s != 1 || a != 2 {
			t.Fatalf("sender handed %d places, answers %d; want 1, 2", s, a)
		}
		if n := st.Info().Reserved; n != 3 {
			t.Fatalf("%d places reserved, want 3 (MaxUnacked and the sender's place)", n)
		}
		close(releaseAnswer)
		close(releaseSender)
		synctest.Wait()
		if n := st.Info().Reserved; n != 0 {
			t.Fatalf("%d places reserved at the end, want 0", n)
		}
	})
}

// TestReserveAnswersNotHeldBySenders: answers do not wait for the places
// senders hold (a Send holds its place through the store's write-ahead,
// which may stall): with MaxUnacked 1 held by a sender, and another sender
// waiting, an answer still gets its place. They counted every place, so a
// stalled store held back the peer's receipts.
func TestReserveAnswersNotHeldBySenders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{MaxUnacked: 1})
		held, err := st.Reserve(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sender, releaseSender := waitPlaces(t, func() (Slot, error) { return st.Reserve(t.Context()) })
		answer, releaseAnswer := waitPlaces(t, func() (Slot, error) { return st.ReserveAnswers(t.Context(), 4) })
		if a := handed(answer); a != 1 {
			t.Fatalf("answers handed %d places while a sender held MaxUnacked 1, want 1", a)
		}
		close(releaseAnswer)
		held.Release()
		if s := handed(sender); s != 1 {
			t.Fatalf("the waiting sender handed %d places, want 1", s)
		}
		close(releaseSender)
		synctest.Wait()
		if n := st.Info().Reserved; n != 0 {
			t.Fatalf("%d places reserved at the end, want 0", n)
		}
	})
}

// TestReserveSenderNotStarvedByAnswers: when room comes back one place at
// a time and an answer always waits for it, a sender waiting in Reserve
// still gets a place at the next ack. Answers took "half the room, at
// least one" first, that is every place, for as long as answers came.
// Answer Slots stand for the stanzas unacknowledged (both count the same
// in either room); releasing one is an ack of one stanza.
func TestReserveSenderNotStarvedByAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{MaxUnacked: 4})
		var inflight []*Slot
		for range 4 {
			s, err := st.ReserveAnswers(t.Context(), 1)
			if err != nil || s.Places() != 1 {
				t.Fatalf("%d places, %v", s.Places(), err)
			}
			inflight = append(inflight, &s)
		}
		sender, releaseSender := waitPlaces(t, func() (Slot, error) { return st.Reserve(t.Context()) })
		defer close(releaseSender)
		for i := range 3 {
			done := make(chan *Slot, 1)
			go func() {
				if s, err := st.ReserveAnswers(t.Context(), 64); err == nil {
					done <- &s
				}
			}()
			synctest.Wait()
			inflight[0].Release() // an ack of one stanza
			inflight = inflight[1:]
			if handed(sender) == 1 {
				if i > 0 {
					t.Errorf("the sender got a place at the ack %d, want the first", i+1)
				}
				for _, s := range append(inflight, <-done) {
					s.Release()
				}
				return
			}
			inflight = append(inflight, <-done) // the answer, now unacknowledged
		}
		t.Fatal("the sender got no place in 3 acks of one while answers kept waiting")
	})
}

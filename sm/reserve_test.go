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
		if err != nil || answers.Places() != 3 {
			t.Fatalf("ReserveAnswers(10) with room for 3: %d places, %v", answers.Places(), err)
		}
		if got := st.Info().Reserved; got != 4 {
			t.Fatalf("%d places reserved, want 4", got)
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
		answers.Release() // room for 3: the waiter takes the 2 it asked for
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

// TestReserveAnswersFirst: an answer waiting for room in the queue goes
// ahead of the senders that waited in Reserve before it (it waited behind
// them, in one line).
func TestReserveAnswersFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{MaxUnacked: 2})
		full, err := st.ReserveAnswers(t.Context(), 2)
		if err != nil || full.Places() != 2 {
			t.Fatalf("%d places, %v", full.Places(), err)
		}
		sender, releaseSender := waitPlaces(t, func() (Slot, error) { return st.Reserve(t.Context()) })
		answer, releaseAnswer := waitPlaces(t, func() (Slot, error) { return st.ReserveAnswers(t.Context(), 1) })
		if n := st.Info().Reserved; n != 2 {
			t.Fatalf("%d places reserved, want 2", n)
		}
		full.Release() // room for 2: the answer's share is 1, the sender gets the other
		if a, s := handed(answer), handed(sender); a != 1 || s != 1 {
			t.Fatalf("answer handed %d places, sender %d; want 1, 1", a, s)
		}
		close(releaseAnswer)
		close(releaseSender)
		synctest.Wait()

		one, _ := st.Reserve(t.Context())
		two, _ := st.Reserve(t.Context())
		sender, releaseSender = waitPlaces(t, func() (Slot, error) { return st.Reserve(t.Context()) })
		answer, releaseAnswer = waitPlaces(t, func() (Slot, error) { return st.ReserveAnswers(t.Context(), 1) })
		one.Release() // room for 1: the answer's
		if a, s := handed(answer), handed(sender); a != 1 || s != 0 {
			t.Fatalf("answer handed %d places, sender %d; want 1, 0 (the answer waited behind the sender)", a, s)
		}
		ended, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := st.ReserveAnswers(ended, 1); err == nil {
			t.Fatal("ReserveAnswers took a place with none free")
		}
		close(releaseAnswer) // its room goes to the sender
		if s := handed(sender); s != 1 {
			t.Fatalf("sender handed %d places after the answer, want 1", s)
		}
		close(releaseSender)
		two.Release()
		synctest.Wait()
		if n := st.Info().Reserved; n != 0 {
			t.Fatalf("%d places reserved at the end, want 0", n)
		}
	})
}

// TestReserveAnswersShare: while senders wait, answers take at most half
// the room that came (at least one place), so that a flood of answers
// cannot hold the senders back for good.
func TestReserveAnswersShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := New(Config{MaxUnacked: 4})
		full, _ := st.ReserveAnswers(t.Context(), 4)
		var senders []chan int
		var releases []chan struct{}
		for range 3 {
			got, release := waitPlaces(t, func() (Slot, error) { return st.Reserve(t.Context()) })
			senders, releases = append(senders, got), append(releases, release)
		}
		answer, releaseAnswer := waitPlaces(t, func() (Slot, error) { return st.ReserveAnswers(t.Context(), 10) })
		full.Release()
		if a := handed(answer); a != 2 {
			t.Fatalf("answers handed %d of 4 places with senders waiting, want 2", a)
		}
		through := 0
		for _, got := range senders {
			through += handed(got)
		}
		if through != 2 {
			t.Fatalf("%d senders through, want 2", through)
		}
		close(releaseAnswer)
		for _, r := range releases {
			close(r)
		}
		synctest.Wait()
		if n := st.Info().Reserved; n != 0 {
			t.Fatalf("%d places reserved at the end, want 0", n)
		}
	})
}

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
	r := &st.reserve
	w := &waiter{ch: make(chan struct{}), more: 5}
	r.push(w)
	st.reserveLocked()
	if r.admitted != 4 || w.more != 3 {
		t.Fatalf("%d places out, %d more handed; want 4, 3", r.admitted, w.more)
	}
	st.leaveReserveLocked(w)
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

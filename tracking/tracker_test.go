package tracking

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var errReply = errors.New("service-unavailable")

// TestWait: a waiter blocked in Wait sees each step (the test lets it run
// after every one), unless the case's steps come before the wait (before).
// Without a synctest.Wait after each step, whether the waiter saw an Error
// that the next step lifted depended on scheduling: "error lifted" failed
// under load with Wait = ERROR.
func TestWait(t *testing.T) {
	cases := []struct {
		name    string
		steps   []MessageState
		target  MessageState
		want    MessageState
		wantErr error
		before  bool // the steps are taken before Wait is called
	}{
		{"reached", []MessageState{DeliveredToServer}, DeliveredToServer, DeliveredToServer, nil, false},
		{"passed", []MessageState{SeenByRecipient}, DeliveredToServer, SeenByRecipient, nil, false},
		{"aborted", []MessageState{Aborted}, DeliveredToServer, Aborted, ErrAborted, false},
		{"timed out", []MessageState{DeliveredToServer, TimedOut}, DeliveredToRecipient, TimedOut, ErrTimedOut, false},
		{"closed", []MessageState{Closed}, DeliveredToRecipient, Closed, ErrClosed, false},
		{"error", []MessageState{Error}, DeliveredToRecipient, Error, ErrFailed, false},
		{"error unwraps reply", []MessageState{Error}, DeliveredToRecipient, Error, errReply, false},
		{"ended short in DTR by timeout", []MessageState{DeliveredToRecipient, TimedOut}, SeenByRecipient, DeliveredToRecipient, ErrTimedOut, false},
		{"ended short in DTR by close", []MessageState{DeliveredToRecipient, Closed}, SeenByRecipient, DeliveredToRecipient, ErrClosed, false},
		{"error returns before it is lifted", []MessageState{Error, DeliveredToRecipient}, DeliveredToRecipient, Error, ErrFailed, false},
		{"error lifted", []MessageState{Error, DeliveredToRecipient}, DeliveredToRecipient, DeliveredToRecipient, nil, true},
		{"invalid target", nil, Error, InTransit, ErrInvalidTarget, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := NewMessageTracker("m")
				type result struct {
					st  MessageState
					err error
				}
				res := make(chan result, 1)
				steps := func() {
					for _, s := range tc.steps {
						if err := tr.Advance(s, &Response{Err: errReply}); err != nil {
							t.Fatalf("Advance(%v): %v", s, err)
						}
						synctest.Wait()
					}
				}
				if tc.before {
					steps()
				}
				go func() {
					st, err := tr.Wait(context.Background(), tc.target)
					res <- result{st, err}
				}()
				synctest.Wait()
				if !tc.before {
					steps()
				}
				select {
				case r := <-res:
					if r.st != tc.want || !errors.Is(r.err, tc.wantErr) || (tc.wantErr == nil) != (r.err == nil) {
						t.Fatalf("Wait = %v, %v; want %v, %v", r.st, r.err, tc.want, tc.wantErr)
					}
				default:
					t.Fatal("Wait did not return")
				}
			})
		})
	}
}

func TestWaitContextLeavesTrackerAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewMessageTracker("m")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := tr.Wait(ctx, DeliveredToRecipient)
		if !errors.Is(err, context.DeadlineExceeded) || st != InTransit || tr.State() != InTransit || tr.Settled() {
			t.Fatalf("Wait = %v, %v; tracker %v settled=%v", st, err, tr.State(), tr.Settled())
		}
		if err := tr.Advance(DeliveredToRecipient, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestManyWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewMessageTracker("m")
		var wg sync.WaitGroup
		for i := range 100 {
			target := MessageState(i % 4)
			wg.Go(func() {
				st, err := tr.Wait(context.Background(), target)
				if err != nil || st < target {
					t.Errorf("Wait(%v) = %v, %v", target, st, err)
				}
			})
		}
		synctest.Wait()
		for _, s := range []MessageState{DeliveredToServer, DeliveredToRecipient, SeenByRecipient} {
			tr.Advance(s, nil)
		}
		wg.Wait()
	})
}

func TestDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewMessageTracker("m")
		done := tr.Done()
		tr.Advance(DeliveredToRecipient, nil)
		select {
		case <-done:
			t.Fatal("Done closed in DELIVERED_TO_RECIPIENT")
		default:
		}
		tr.Close()
		<-done
		if tr.State() != DeliveredToRecipient {
			t.Fatalf("close changed the state to %v", tr.State())
		}
		if err := tr.Advance(SeenByRecipient, nil); !errors.Is(err, ErrRefused) {
			t.Fatalf("advance after Done: %v", err)
		}
		<-tr.Done() // a settled tracker returns a closed channel
	})
}

// TestCallbacks checks order, the goroutine they run on and re-entrance.
func TestCallbacks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewMessageTracker("m")
		var mu sync.Mutex
		var seen []MessageState
		tr.OnStateChange(func(from, to MessageState, _ *Response) {
			// Re-entering the library from a callback must not deadlock.
			_ = tr.State()
			_ = tr.Response()
			_ = tr.Advance(to, nil)
			mu.Lock()
			seen = append(seen, to)
			mu.Unlock()
		})
		for _, s := range []MessageState{DeliveredToServer, DeliveredToServer, DeliveredToRecipient, Error, SeenByRecipient} {
			tr.Advance(s, nil)
		}
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		want := []MessageState{DeliveredToServer, DeliveredToRecipient, SeenByRecipient}
		if len(seen) != len(want) {
			t.Fatalf("callbacks saw %v, want %v", seen, want)
		}
		for i := range want {
			if seen[i] != want[i] {
				t.Fatalf("callbacks saw %v, want %v", seen, want)
			}
		}
	})
}

func TestCallbackNotOnReportingGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := NewMessageTracker("m")
		release := make(chan struct{})
		ran := make(chan struct{})
		tr.OnStateChange(func(from, to MessageState, _ *Response) {
			<-release // would deadlock Advance if run on its goroutine
			close(ran)
		})
		tr.Advance(DeliveredToServer, nil)
		close(release)
		<-ran
	})
}

func TestConcurrentAdvance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for range 20 {
			concurrentAdvance(t)
		}
	})
}

func concurrentAdvance(t *testing.T) {
	{
		tr := NewMessageTracker("m")
		var mu sync.Mutex
		var last MessageState
		tr.OnStateChange(func(from, to MessageState, _ *Response) {
			mu.Lock()
			defer mu.Unlock()
			if from != last {
				t.Errorf("callback from %v, but the last change went to %v", from, last)
			}
			last = to
		})
		var wg sync.WaitGroup
		for _, s := range []MessageState{DeliveredToServer, DeliveredToRecipient, SeenByRecipient, Error, TimedOut} {
			wg.Go(func() {
				for range 50 {
					tr.Advance(s, nil)
					_, _ = tr.Wait(context.Background(), InTransit)
				}
			})
		}
		wg.Wait()
		<-tr.Done()
		switch tr.State() {
		case SeenByRecipient, TimedOut, DeliveredToRecipient, Error:
		default:
			t.Fatalf("settled in %v", tr.State())
		}
		synctest.Wait()
		mu.Lock()
		if last != tr.State() {
			t.Errorf("last callback went to %v, tracker is in %v", last, tr.State())
		}
		mu.Unlock()
	}
}

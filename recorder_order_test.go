package xmpptrack

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// batchLog wraps a store and keeps what each commit held, in commit order.
type batchLog struct {
	store.Store
	mu      sync.Mutex
	batches []loggedBatch
}

// loggedBatch is what a commit held: the inbound count it saved, if it
// saved a session, and its changes.
type loggedBatch struct {
	saved   bool
	inbound uint32
	changes []store.Change
}

// Commit commits b and logs it; one at a time, so that the log's order
// is the commits' order.
func (l *batchLog) Commit(ctx context.Context, b *store.Batch) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.Store.Commit(ctx, b); err != nil {
		return err
	}
	lb := loggedBatch{changes: slices.Clone(b.Changes)}
	if len(b.Sessions) > 0 {
		lb.saved, lb.inbound = true, b.Sessions[0].Inbound
	}
	l.batches = append(l.batches, lb)
	return nil
}

// TestStoreCountReadBeforeChanges: a receipt that comes while the
// recorder is between its two reads of a round (the inbound count and the
// queue of changes) is never covered by a committed inbound count before
// its change is committed: the recorder reads the count first, so the
// receipt either misses the count or makes the queue. The recorder is held
// at the first of the two seams it reaches (readHook after the count,
// takenHook after the queue), whichever order the reads are in.
func TestStoreCountReadBeforeChanges(t *testing.T) {
	srv := newPeerServer(t)
	st := &batchLog{Store: openStore(t)}
	c := dialPeer(t, srv, Config{Store: st, NoCarbons: true, NoReceipts: true})
	pc := srv.next(t)
	a := sendAcked(t, c, Message{To: bob, Body: "a"})
	pc.nextMessage(t)

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() {
		once.Do(func() {
			close(held)
			<-release
		})
	}
	c.dur.readHook.Store(&hold)
	c.dur.takenHook.Store(&hold)
	t.Cleanup(func() {
		once.Do(func() {}) // a recorder not held yet passes
		select {
		case <-release:
		default:
			close(release)
		}
	})
	select {
	case <-held: // the recorder's next round (at most sessionEvery away)
	case <-time.After(testWait):
		t.Fatal("the recorder did not start a round")
	}
	pc.send(`<message from='bob@example.org/pc' id='r1'>%s</message>`, receiptFor(a.ID()))
	syncReader(t, pc, "sync1")
	n := c.sm.Info().Handled // the answered IQ is the last stanza counted
	k := n - 1               // the receipt
	close(release)
	waitSaved(t, c, n)

	st.mu.Lock()
	defer st.mu.Unlock()
	stored := false
	for i, b := range st.batches {
		for _, ch := range b.changes {
			stored = stored || ch.ID == a.ID() && ch.State == tracking.DeliveredToRecipient
		}
		if b.saved && b.inbound >= k && !stored {
			t.Fatalf("commit %d saved the inbound count %d, which covers the receipt (stanza %d), before its change was committed",
				i, b.inbound, k)
		}
	}
	if !stored {
		t.Errorf("the receipt's change was never committed")
	}
}

// TestStoreNoteMismatchNotFinal: a change that reaches the reporting hook
// while an older note is due and not its own (the hook missed the noted
// change) is logged, and reported as its own note says if one follows,
// else, a CLOSED, as not final (ErrStillPending), and any other state as
// made; the missed notes are taken.
func TestStoreNoteMismatchNotFinal(t *testing.T) {
	t1, t2, t3 := tracking.NewMessageTracker("m1"), tracking.NewMessageTracker("m2"), tracking.NewMessageTracker("m3")
	type reportedAs struct {
		id  string
		err error
	}
	for _, tc := range []struct {
		name  string
		noted []bool                // of t1, t2, t3 (a CLOSED made while closing, or a change recorded)
		quiet bool                  // t2's change is a re-loaded tracker's move the application saw: its note is silent
		later tracking.MessageState // the change of t2 and t3 (t1's is a CLOSED)
		want  []reportedAs          // what the hook reports, hearing of t2 and t3 in turn
	}{
		// t1's change never reaches the hook; t2 finds its own note after
		// it, silent (not reported), where a CLOSED without one is not final.
		{"own note follows", []bool{true, false, false}, true, tracking.Closed, []reportedAs{{"m3", nil}}},
		// t1's change never reaches the hook; t2 has no note: not final.
		{"no own note", []bool{true, false, false}, false, tracking.Closed, []reportedAs{{"m2", ErrStillPending}, {"m3", nil}}},
		// t1's change never reaches the hook; t2's is not a CLOSED: as made.
		{"not a CLOSED", []bool{true, false, false}, false, tracking.DeliveredToServer, []reportedAs{{"m2", nil}, {"m3", nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecorder{}
			d, err := openDurable(t.Context(), openStore(t), testJID, slog.New(logs))
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()
			var got []reportedAs
			made, report := d.hooks(func(tr *tracking.MessageTracker, _, _ tracking.MessageState, resp *tracking.Response) {
				var err error
				if resp != nil {
					err = resp.Err
				}
				got = append(got, reportedAs{tr.ID(), err})
			})
			for i, tr := range []*tracking.MessageTracker{t1, t2, t3} {
				to := tc.later
				if i == 0 {
					to = tracking.Closed
				}
				if i == 1 && tc.quiet {
					d.restoring(tr.ID(), to, false)
				}
				d.closing.Store(tc.noted[i])
				made(tr, tracking.InTransit, to, nil)
			}
			for _, tr := range []*tracking.MessageTracker{t2, t3} {
				report(tr, tracking.InTransit, tc.later, nil)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("reported %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i].id != tc.want[i].id || !errors.Is(got[i].err, tc.want[i].err) {
					t.Errorf("report %d: %v, want %v", i, got[i], tc.want[i])
				}
			}
			if n := logs.count("not reported in order"); n != 1 {
				t.Errorf("%d warnings of a missed note, want 1 (logs %q)", n, logs.all())
			}
			if d.noted.Load() != 0 || len(d.notes) != 0 {
				t.Errorf("notes left %v, want none", d.notes)
			}
		})
	}
}

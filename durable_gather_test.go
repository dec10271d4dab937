package xmpptrack

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmpptrack/xmpptrack/sm"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// batchStore is a store that keeps the change batches committed to it; only
// what the recorder uses is implemented.
type batchStore struct {
	store.Store
	mu       sync.Mutex
	batches  [][]string      // the ids of each batch's changes
	sessions []store.Session // the sessions saved, in order
}

func (b *batchStore) Commit(_ context.Context, bt *store.Batch) error {
	var ids []string
	for _, c := range bt.Changes {
		ids = append(ids, c.ID)
	}
	b.mu.Lock()
	b.batches = append(b.batches, ids)
	b.sessions = append(b.sessions, bt.Sessions...)
	b.mu.Unlock()
	return nil
}

func (b *batchStore) saved() []store.Session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]store.Session(nil), b.sessions...)
}

func (b *batchStore) ClaimKey(_ context.Context, k store.Key) (string, bool, error) {
	return k.Value, true, nil
}

func (b *batchStore) Lock(_ context.Context, owner store.Instance) (store.Lease, error) {
	return nopLease{owner}, nil
}

func (b *batchStore) committed() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]string(nil), b.batches...)
}

type nopLease struct{ owner store.Instance }

func (l nopLease) Owner() store.Instance { return l.owner }
func (l nopLease) Lost() <-chan struct{} { return nil }
func (l nopLease) Release() error        { return nil }

// openBatchDurable opens a recorder on a batchStore.
func openBatchDurable(t *testing.T) (*batchStore, *durable) {
	t.Helper()
	bs := &batchStore{}
	d, err := openDurable(context.Background(), bs, jid.MustParse("a@example.org/r"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return bs, d
}

// TestRecorderGathers: the recorder lets changes that come within gather of
// each other accumulate and commits them together; flush (Client.Status,
// Close) does not wait for that.
func TestRecorderGathers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs, d := openBatchDurable(t)
		defer d.close()
		d.record("m1", tracking.DeliveredToServer, time.Now(), nil)
		synctest.Wait()
		d.record("m2", tracking.DeliveredToServer, time.Now(), nil)
		time.Sleep(gather)
		synctest.Wait()
		if got := bs.committed(); len(got) != 1 || len(got[0]) != 2 {
			t.Errorf("batches %v, want one with m1 and m2", got)
		}
		d.record("m3", tracking.DeliveredToServer, time.Now(), nil)
		start := time.Now()
		if err := d.flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("flush waited %v for the recorder to gather", waited)
		}
		if got := bs.committed(); len(got) != 2 || len(got[1]) != 1 || got[1][0] != "m3" {
			t.Errorf("batches %v, want m3 alone second", got)
		}
	})
}

// TestRecorderSavesNow: saveNow (a new stream) makes the recorder save the
// stream-management state at once, also when it comes while the recorder
// gathers after a commit and no change follows.
func TestRecorderSavesNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs, d := openBatchDurable(t)
		defer d.close()
		c := &Client{sm: sm.New(sm.Config{})}
		if err := c.sm.Restore(sm.Resumption{ID: "s1", JID: jid.MustParse("a@example.org/r")}, nil); err != nil {
			t.Fatal(err)
		}
		d.client.Store(c)
		d.record("m1", tracking.DeliveredToServer, time.Now(), nil)
		time.Sleep(gather)
		synctest.Wait() // m1 committed with the session; the recorder gathers again
		if got := bs.saved(); len(got) != 1 || got[0].ID != "s1" {
			t.Fatalf("sessions saved %+v, want s1", got)
		}
		if err := c.sm.Restore(sm.Resumption{ID: "s2", JID: jid.MustParse("a@example.org/r")}, nil); err != nil {
			t.Fatal(err)
		}
		d.saveNow()
		synctest.Wait()
		if got := bs.saved(); len(got) != 2 || got[1].ID != "s2" {
			t.Errorf("sessions saved %+v, want s1 then s2 at once", got)
		}
	})
}

// TestRecorderDropsBurstArrays: after a round of more than maxKeptChanges
// changes (a burst, as while the store was down) the recorder does not keep
// the queue's array nor the batch's for its next rounds.
func TestRecorderDropsBurstArrays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs, d := openBatchDurable(t)
		defer d.close()
		for i := range 2 * maxKeptChanges {
			d.record(fmt.Sprint("m", i), tracking.DeliveredToServer, time.Now(), nil)
		}
		if err := d.flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"a", "b"} {
			d.record(id, tracking.DeliveredToServer, time.Now(), nil)
			if err := d.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := bs.committed(); len(got) != 3 || len(got[0]) != 2*maxKeptChanges {
			t.Fatalf("%d batches, want the burst in one and two single changes", len(got))
		}
		d.mu.Lock()
		spare := cap(d.spare) + cap(d.queue)
		d.mu.Unlock()
		if spare > maxKeptChanges || cap(d.changes) > maxKeptChanges {
			t.Errorf("after the burst the recorder keeps arrays of %d queued and %d store changes; want at most %d each",
				spare, cap(d.changes), maxKeptChanges)
		}
	})
}

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xmpptrack/xmpptrack/internal/storestats"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestPagesPerCommit: a write-ahead writes 2 pages to the WAL (the message
// row and its id index entry: it is not listed in the pending index, see
// listing), a DELIVERED_TO_SERVER commit 3 (the change row, its index
// entry, the message row), and so does the DELIVERED_TO_RECIPIENT commit
// after it. With a listing lag of 1, so that each ack's sweep lists the
// message before (its pending index entry and listing.upto: 5 pages), the
// receipt of a listed message still writes 3: an update that set listed
// would rewrite its pending index entry too. Medians over many commits,
// since a page split adds some now and then.
func TestPagesPerCommit(t *testing.T) {
	for _, c := range []struct {
		lag                 int64
		ahead, ack, receipt int64
	}{{0, 2, 3, 3}, {1, 2, 5, 3}} {
		a, k, r := pagesPerCommit(t, c.lag)
		if a > c.ahead || k > c.ack || r > c.receipt {
			t.Errorf("listing lag %d: pages per commit, median: write-ahead %d, ack %d, receipt %d; want %d, %d and %d",
				c.lag, a, k, r, c.ahead, c.ack, c.receipt)
		}
	}
}

// openNoCheckpoints opens a store with cfg in a new file whose WAL is
// never checkpointed (and nothing pruned), and returns its path and page
// size. The store is closed at the test's end.
func openNoCheckpoints(t *testing.T, cfg Config) (*Store, string, int64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.db")
	cfg.Retention, cfg.checkpointPages = -1, 1<<30
	s, err := OpenConfig(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var pageSize int64
	if err := s.w.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	return s, p, pageSize
}

// pagesPerCommit returns the median pages of a write-ahead, its ack and
// its receipt, with listing lag lag (0: listLag).
func pagesPerCommit(t *testing.T, lag int64) (ahead, ack, receipt int64) {
	s, p, pageSize := openNoCheckpoints(t, Config{listLag: lag})
	frames := func() int64 { return walSize(t, p) / (pageSize + 24) } // the header is smaller than a frame
	var aheads, acks, receipts []int64
	for i := range 300 {
		id := fmt.Sprintf("m%06d", i)
		m := message(id)
		m.Raw = make([]byte, 350)
		f := frames()
		commitT(t, s, &store.Batch{Messages: []store.Message{m}})
		g := frames()
		commitT(t, s, change(id, tracking.DeliveredToServer))
		h := frames()
		commitT(t, s, change(id, tracking.DeliveredToRecipient))
		if i >= 100 {
			aheads, acks, receipts = append(aheads, g-f), append(acks, h-g), append(receipts, frames()-h)
		}
	}
	median := func(v []int64) int64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	return median(aheads), median(acks), median(receipts)
}

// TestStats: the counters of package storestats count the transactions
// and the requests committed and the WAL pages they wrote, as the WAL file
// grew (checkpoints held off, and past the frames of Open's transactions,
// which the WAL started over from). A write-ahead refused as a duplicate is
// no request committed, in a transaction that wrote nothing; a batch that
// fails rolls its transaction back and counts nothing.
func TestStats(t *testing.T) {
	ctx := context.Background()
	s, p, pageSize := openNoCheckpoints(t, Config{failApply: func(b *store.Batch) error {
		if len(b.Messages) > 0 && b.Messages[0].ID == "refused" {
			return errors.New("refused")
		}
		return nil
	}})
	stats := func() storestats.Stats {
		t.Helper()
		st, ok := storestats.SQLite(s)
		if !ok {
			t.Fatal("storestats.SQLite does not take a *Store")
		}
		return st
	}
	for i := range 20 {
		commitT(t, s, &store.Batch{Messages: []store.Message{message(fmt.Sprintf("w%d", i))}})
	}
	st0, wal0 := stats(), walSize(t, p)
	commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
	commitT(t, s, &store.Batch{Messages: []store.Message{message("b")}, Changes: []store.Change{{ID: "a", State: tracking.DeliveredToServer}}})
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message("a")}}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("a again: %v, want ErrExists", err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message("refused")}}); err == nil {
		t.Fatal("the refused batch was committed")
	}
	st := stats()
	if d := (storestats.Stats{Transactions: st.Transactions - st0.Transactions, Requests: st.Requests - st0.Requests,
		WALPages: st.WALPages - st0.WALPages}); d.Transactions != 3 || d.Requests != 2 ||
		d.WALPages == 0 || d.WALPages*(pageSize+24) != walSize(t, p)-wal0 {
		t.Errorf("counters moved by %+v for a WAL grown from %d to %d bytes (pages of %d); want 3 transactions, 2 requests and the pages",
			d, wal0, walSize(t, p), pageSize)
	}
	s.Close()
	if got := stats(); got != st {
		t.Errorf("counters after Close %+v, want %+v", got, st)
	}
	if _, ok := storestats.SQLite(42); ok {
		t.Error("storestats.SQLite takes an int")
	}
}

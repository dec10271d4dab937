package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

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

// pagesPerCommit returns the median pages of a write-ahead, its ack and
// its receipt, with listing lag lag (0: listLag).
func pagesPerCommit(t *testing.T, lag int64) (ahead, ack, receipt int64) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1, checkpointPages: 1 << 30, listLag: lag})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pageSize int64
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
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

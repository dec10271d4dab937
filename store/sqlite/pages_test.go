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
// listing) and a DELIVERED_TO_SERVER commit 3 (the change row, its index
// entry, the message row). The median over many commits, since a page
// split adds some now and then.
func TestPagesPerCommit(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(ctx, p, Config{Retention: -1, checkpointPages: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pageSize int64
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	frames := func() int64 { return walSize(t, p) / (pageSize + 24) } // the header is smaller than a frame
	var ahead, acked []int64
	for i := range 300 {
		id := fmt.Sprintf("m%06d", i)
		m := message(id)
		m.Raw = make([]byte, 350)
		f := frames()
		commitT(t, s, &store.Batch{Messages: []store.Message{m}})
		g := frames()
		commitT(t, s, change(id, tracking.DeliveredToServer))
		if i >= 100 {
			ahead, acked = append(ahead, g-f), append(acked, frames()-g)
		}
	}
	slices.Sort(ahead)
	slices.Sort(acked)
	if a, c := ahead[len(ahead)/2], acked[len(acked)/2]; a > 2 || c > 3 {
		t.Errorf("pages per commit, median: write-ahead %d, change %d; want 2 and 3", a, c)
	}
}

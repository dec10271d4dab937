package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestChangesMultiRow: a transaction that holds a recorder's batch of more
// changes than one multi-row insert takes (64 + 4×8 + 4×1 rows), then a
// new message, then more changes, numbers them all in that order: each
// cursor above the one before, the new message above the changes queued
// before it, and the feed and the histories read them back so.
func TestChangesMultiRow(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	const n = 100
	var created int64 // the cursor of the last message's creation
	for i := range n {
		b := &store.Batch{Messages: []store.Message{message(fmt.Sprintf("m%d", i))}}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		created = b.Messages[0].Cursor
	}
	acks := &store.Batch{}
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for i := range n {
		acks.Changes = append(acks.Changes, store.Change{ID: fmt.Sprintf("m%d", i), State: tracking.DeliveredToServer,
			At: at.Add(time.Duration(i) * time.Second), Evidence: store.Evidence{From: fmt.Sprintf("s%d@example.org", i)}})
	}
	fresh := &store.Batch{Messages: []store.Message{message("x")}}
	more := &store.Batch{Changes: []store.Change{{ID: "x", State: tracking.DeliveredToServer}}}
	for i := range 10 {
		more.Changes = append(more.Changes, store.Change{ID: fmt.Sprintf("m%d", i), State: tracking.DeliveredToRecipient})
	}
	err := s.write(ctx, func(w *writer) error {
		for _, b := range []*store.Batch{acks, fresh, more} {
			if err := w.apply(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []int64 // the cursors in the order of the transaction
	for _, c := range acks.Changes {
		want = append(want, c.Cursor)
	}
	want = append(want, fresh.Messages[0].Cursor)
	for _, c := range more.Changes {
		want = append(want, c.Cursor)
	}
	prev := created
	for i, c := range want {
		if c <= prev {
			t.Fatalf("cursor %d of the transaction is %d, after %d", i, c, prev)
		}
		prev = c
	}
	feed, err := s.Changes(ctx, store.FeedQuery{After: created, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(feed) != len(want) {
		t.Fatalf("feed after m99: %d entries, want %d", len(feed), len(want))
	}
	for i, c := range feed {
		if c.Cursor != want[i] {
			t.Fatalf("feed entry %d has cursor %d, want %d", i, c.Cursor, want[i])
		}
	}
	// Each row of a multi-row insert keeps its own columns: one in the
	// middle of the 64-row statement, one in the middle of an 8-row one,
	// one of the single rows.
	for _, i := range []int{30, 70, 97} {
		rec, err := s.Message(ctx, fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		c := rec.History[1]
		if c.Cursor != acks.Changes[i].Cursor || c.State != tracking.DeliveredToServer ||
			!c.At.Equal(at.Add(time.Duration(i)*time.Second)) || c.From != fmt.Sprintf("s%d@example.org", i) {
			t.Errorf("m%d's ack %+v, want cursor %d at %v from s%d@example.org", i, c, acks.Changes[i].Cursor,
				at.Add(time.Duration(i)*time.Second), i)
		}
	}
	rec, err := s.Message(ctx, "m5")
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.History) != 3 || rec.History[1].State != tracking.DeliveredToServer ||
		rec.History[2].State != tracking.DeliveredToRecipient || rec.History[2].Cursor != more.Changes[6].Cursor {
		t.Fatalf("m5's history %+v, want its creation, DELIVERED_TO_SERVER and DELIVERED_TO_RECIPIENT", rec.History)
	}
}

package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// testdata/schema6.db was written by the schema-6 code: s1 and s2 settled
// (SEEN_BY_RECIPIENT, s1 on 2026-01-02 and s2 on 2036-01-02) with
// sequence numbers 1 and 2; p1 DELIVERED_TO_SERVER with 3 (listed,
// listing.upto 9), p2 in transit with 4, p3 with a voided number (0), p4
// without one; cursors up to 13, and a session.

// seqsOf returns the stored sequence numbers by id: -1 for none.
func seqsOf(t *testing.T, s *Store, ids ...string) []int64 {
	t.Helper()
	var got []int64
	for _, id := range ids {
		r, err := s.Message(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Written {
			got = append(got, -1)
		} else {
			got = append(got, int64(r.Seq))
		}
	}
	return got
}

// TestMigrateSchema6: Open upgrades a schema-6 file to 7: the sequence
// numbers move to seqs and read as before (a voided one as 0, none as
// not written), Pending and the histories read as before, new numbers
// replace old ones, and Prune deletes a pruned message's number.
func TestMigrateSchema6(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema6.db", 6)
	ids := []string{"s1", "s2", "p1", "p2", "p3", "p4"}
	if got, want := seqsOf(t, s, ids...), []int64{1, 2, 3, 4, 0, -1}; !slices.Equal(got, want) {
		t.Errorf("sequence numbers of %v: %v, want %v", ids, got, want)
	}
	a := message("x").Owner
	var pending []string
	if err := s.Pending(ctx, a, func(m store.Message) error {
		pending = append(pending, fmt.Sprintf("%s:%v:%d:%v", m.ID, m.Written, m.Seq, m.State))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"p1:true:3:" + tracking.DeliveredToServer.String(), "p2:true:4:" + tracking.InTransit.String(),
		"p3:true:0:" + tracking.InTransit.String(), "p4:false:0:" + tracking.InTransit.String()}
	if !slices.Equal(pending, want) {
		t.Errorf("Pending: %v, want %v", pending, want)
	}
	seen := []tracking.MessageState{tracking.InTransit, tracking.DeliveredToServer, tracking.DeliveredToRecipient, tracking.SeenByRecipient}
	if h := historyOf(t, s, "s2"); !slices.Equal(h, seen) {
		t.Errorf("history of s2: %v, want %v", h, seen)
	}
	b := &store.Batch{Messages: []store.Message{message("new")}}
	commitT(t, s, b)
	if b.Messages[0].Cursor != 14 {
		t.Errorf("new message's cursor %d, want 14", b.Messages[0].Cursor)
	}
	commitT(t, s, &store.Batch{Written: []store.Written{{ID: "p2", Seq: 9}, {ID: "p4", Seq: 10}, {ID: "new", Seq: 11}}})
	commitT(t, s, &store.Batch{Written: []store.Written{{ID: "p1", Seq: 0}}, Changes: []store.Change{{ID: "p2", State: tracking.DeliveredToServer}}})
	if got, want := seqsOf(t, s, "p1", "p2", "p3", "p4", "new"), []int64{0, 9, 0, 10, 11}; !slices.Equal(got, want) {
		t.Errorf("sequence numbers after new ones: %v, want %v", got, want)
	}
	if k, err := s.Prune(ctx, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || k != 1 {
		t.Errorf("Prune: %d (%v), want 1", k, err)
	}
	var left int
	if err := rawDB(t, p).QueryRow(`SELECT count(*) FROM seqs WHERE n = 1`).Scan(&left); err != nil || left != 0 {
		t.Errorf("the pruned s1's number: %d rows (%v), want 0", left, err)
	}
}

// TestSchema6WriterOnSchema7: every statement of the schema-6 code that
// names messages.seq (its write-ahead, its row updates, its reads of
// messages) fails on an upgraded file and writes nothing, so that no
// number of an older version still running lands where this version does
// not read it.
func TestSchema6WriterOnSchema7(t *testing.T) {
	ctx := context.Background()
	s, p := openUpgraded(t, "schema6.db", 6)
	old := olderWriter(t, p)
	before, err := s.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO messages
		(n, id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq, state, settled, updated, first, listed)
		VALUES (14, 'older', 'a@example.org', '', 'b@example.org', 0, '', '', x'00', 1, 0, NULL, 0, 0, 1, 0, 0)
		ON CONFLICT (id) DO NOTHING`,
		`UPDATE messages SET seq = 7 WHERE n = 10 AND state = 0 AND settled = 0`,
		`UPDATE messages SET state = 1, updated = 5, seq = coalesce(7, seq) WHERE n = 10 AND state = 0 AND settled = 0`,
		`SELECT seq FROM messages WHERE id = 'p2'`,
	} {
		if _, err := old.ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "seq") {
			t.Errorf("%s: %v, want refused (no column seq)", q, err)
		}
	}
	if c, err := s.LastCursor(ctx); err != nil || c != before {
		t.Errorf("LastCursor %d (%v), want %d: something was written", c, err, before)
	}
	if got, want := seqsOf(t, s, "p2"), []int64{4}; !slices.Equal(got, want) {
		t.Errorf("p2's number %v, want %v", got, want)
	}
}

// TestSeqOfMessagePrunedByOtherWriter: a message this Store value caches
// (unsettled) is pruned through another Store value on the file; a
// sequence number this one then records for it (stored without a check of
// the message's row) is not stored: the committer's cache is dropped once
// the file changed under it, and the message is not found.
func TestSeqOfMessagePrunedByOtherWriter(t *testing.T) {
	ctx := context.Background()
	a, b := twoWriters(t, Config{Retention: -1})
	x := message("x")
	x.Deadline = time.Now().Add(time.Minute)
	bt := &store.Batch{Messages: []store.Message{x}}
	commitT(t, a, bt)
	commitT(t, a, change("x", tracking.DeliveredToRecipient)) // cached, unsettled
	if k, err := b.Prune(ctx, time.Now().Add(time.Hour)); err != nil || k != 1 {
		t.Fatalf("pruned %d (%v), want 1", k, err)
	}
	commitT(t, a, &store.Batch{Written: []store.Written{{ID: "x", Seq: 5}}})
	var rows int
	if err := a.r.QueryRowContext(ctx, `SELECT count(*) FROM seqs WHERE n = ?`, bt.Messages[0].Cursor).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("numbers of the pruned message: %d rows (%v), want 0", rows, err)
	}
}

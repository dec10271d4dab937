package sqlitefloor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/internal/testkit/procio"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "floor.db"), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// count returns the rows of table in the floor's file.
func count(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.conn.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var owner = store.Instance{Account: "a@example.net", Resource: "r"}

func msg(id string) store.Message {
	return store.Message{ID: id, Owner: owner, To: "b@example.net", Raw: []byte("<message id='" + id + "'/>"), State: tracking.InTransit}
}

// TestCommitWrites: a batch's messages, changes (numbered in commit order,
// across statements of different sizes), sequence numbers and session are
// in the floor's file once Commit returned.
func TestCommitWrites(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	b := &store.Batch{Messages: []store.Message{msg("m1"), msg("m2")}}
	for i := range 75 { // 64 + 8 + 1 + 1 + 1 rows
		b.Changes = append(b.Changes, store.Change{ID: "m1", State: tracking.DeliveredToServer, Evidence: store.Evidence{From: "x"[:i%2]}})
	}
	b.Written = []store.Written{{ID: "m1", Seq: 1}, {ID: "m2", Seq: 2}}
	b.Sessions = []store.Session{{Owner: owner, ID: "sm", Outbound: 2}}
	if err := s.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]int{"msgs": 2, "changes": 75, "seqs": 2, "sessions": 1} {
		if got := count(t, s, table); got != want {
			t.Errorf("%s: %d rows, want %d", table, got, want)
		}
	}
	for i, c := range b.Changes {
		if c.Cursor != int64(i+1) {
			t.Fatalf("change %d: cursor %d, want %d", i, c.Cursor, i+1)
		}
		if c.At.IsZero() {
			t.Fatalf("change %d: no time", i)
		}
	}
	var last int64
	if err := s.conn.QueryRowContext(ctx, "SELECT max(cursor) FROM changes").Scan(&last); err != nil || last != 75 {
		t.Fatalf("last cursor %d, %v", last, err)
	}
	// The reads are the real store's, which saw none of it.
	if _, err := s.Session(ctx, owner); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Session: %v, want the real store's ErrNotFound", err)
	}
}

// TestDuplicateFailsItsBatch: a message id that exists fails its own batch
// with store.ErrExists, alone or grouped, and the group's other batches are
// written.
func TestDuplicateFailsItsBatch(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("m1")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("m1")}}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("repeated id: %v, want ErrExists", err)
	}
	dup := groupcommit.NewRequest(&store.Batch{Messages: []store.Message{msg("m1")},
		Changes: []store.Change{{ID: "m1", State: tracking.DeliveredToServer}}})
	ok := groupcommit.NewRequest(&store.Batch{Messages: []store.Message{msg("m2")},
		Changes: []store.Change{{ID: "m2", State: tracking.DeliveredToServer, At: time.Now()}}})
	s.commitGroup([]*groupcommit.Request{dup, ok})
	if err := dup.Wait(); !errors.Is(err, store.ErrExists) {
		t.Errorf("grouped repeat: %v, want ErrExists", err)
	}
	if err := ok.Wait(); err != nil {
		t.Errorf("its group's other batch: %v", err)
	}
	if got := dup.Batch.Changes[0].Cursor; got != 0 {
		t.Errorf("the refused batch's change has cursor %d", got)
	}
	if got := ok.Batch.Changes[0].Cursor; got != 1 {
		t.Errorf("the written change has cursor %d, want 1", got)
	}
	if got, want := count(t, s, "msgs"), 2; got != want {
		t.Errorf("msgs: %d rows, want %d", got, want)
	}
	if got, want := count(t, s, "changes"), 1; got != want {
		t.Errorf("changes: %d rows, want %d", got, want)
	}
}

// TestReopen: what Commit returned for is in the file after Close and a
// new Open (the WAL's frames included).
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floor.db")
	ctx := context.Background()
	s, err := Open(ctx, path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("m1")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path, Config{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := count(t, s, "msgs"); got != 1 {
		t.Fatalf("msgs after reopening: %d rows, want 1", got)
	}
}

// BenchmarkWriteAhead is store/sqlite's BenchmarkWriteAhead on the floor:
// lone write-aheads, one Commit each, as a sequential sender's Send makes
// them. It reports the process's CPU per message (cpu-us/msg) and the WAL
// pages each wrote (pages/msg).
func BenchmarkWriteAhead(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "b.db"), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var mode string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		b.Fatalf("journal mode %q, %v", mode, err)
	}
	m := store.Message{Owner: owner, To: "b@example.org", Raw: make([]byte, 350)}
	var rb [16]byte
	b.ReportAllocs()
	p0 := s.Stats().WALPages
	cpu0 := procio.SelfCPU()
	for b.Loop() {
		rand.Read(rb[:])
		m.ID = base64.RawURLEncoding.EncodeToString(rb[:])
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{m}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((procio.SelfCPU()-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-us/msg")
	b.ReportMetric(float64(s.Stats().WALPages-p0)/float64(b.N), "pages/msg")
}

// TestDiscard: with Discard, Commit writes nothing.
func TestDiscard(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "floor.db"), Config{Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{msg("m1")}}); err != nil {
		t.Fatal(err)
	}
	if got := count(t, s, "msgs"); got != 0 {
		t.Errorf("msgs: %d rows, want none", got)
	}
	if got := s.Stats().Requests; got != 1 {
		t.Errorf("requests %d, want 1", got)
	}
}

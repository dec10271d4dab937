package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// walWrites returns the writes the batching layer made to the WAL files
// open in the process.
func walWrites() int {
	batch.mu.Lock()
	defer batch.mu.Unlock()
	n := 0
	for _, w := range batch.files {
		n += w.writes
	}
	return n
}

// TestWALOneWritePerCommit: the writer's WAL gets one write per
// transaction, a lone write-ahead's two frames (four writes of SQLite's)
// and a commit of many state changes alike.
func TestWALOneWritePerCommit(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	defer s.Close()
	commit := func(b *store.Batch) int {
		t.Helper()
		before := walWrites()
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		return walWrites() - before
	}
	var changes []store.Change
	for i := range 40 {
		id := fmt.Sprint("m", i)
		if n := commit(&store.Batch{Messages: []store.Message{message(id)}}); i > 0 && n != 1 {
			// (The first commit starts the WAL: its header is a write
			// of its own.)
			t.Errorf("write-ahead %d: %d writes to the WAL, want 1", i, n)
		}
		changes = append(changes, store.Change{ID: id, State: tracking.DeliveredToServer},
			store.Change{ID: id, State: tracking.SeenByRecipient, Evidence: store.Evidence{From: "b@example.org/x"}})
	}
	if n := commit(&store.Batch{Changes: changes}); n != 1 {
		t.Errorf("a commit of %d changes: %d writes to the WAL, want 1", len(changes), n)
	}
}

// TestWALBatchSnapshots: what the files hold once Commit returned (copied
// as a process killed then would leave them) opens as a store with every
// committed message and change, for lone write-aheads, for a transaction
// larger than the write batch and the page cache (SQLite spills pages to
// the WAL and rewrites them in place before the commit), and for the
// commits after a checkpoint started the WAL over; with the default
// configuration, with Shared (SQLite's "unix" layer under the batching
// one) and with Sync (a sync of the WAL at every commit).
func TestWALBatchSnapshots(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"default", Config{}}, {"shared", Config{Shared: true}}, {"sync", Config{Sync: true}}} {
		t.Run(c.name, func(t *testing.T) { walBatchSnapshots(t, c.cfg) })
	}
}

func walBatchSnapshots(t *testing.T, cfg Config) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "s.db")
	cfg.checkpointPages, cfg.Retention = 50, -1
	s, err := OpenConfig(ctx, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []string
	var settled []string
	check := func(step string) {
		t.Helper()
		cp := filepath.Join(t.TempDir(), "copy.db")
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(p + suffix)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if err := os.WriteFile(cp+suffix, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c, err := OpenConfig(ctx, cp, Config{Retention: -1, Shared: cfg.Shared})
		if err != nil {
			t.Fatalf("%s: the copy: %v", step, err)
		}
		defer c.Close()
		var ok string
		if err := c.r.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("%s: integrity_check: %q, %v", step, ok, err)
		}
		for _, id := range ids {
			if _, err := c.Message(ctx, id); err != nil {
				t.Fatalf("%s: committed message %s missing from the copy: %v", step, id, err)
			}
		}
		for _, id := range settled {
			r, err := c.Message(ctx, id)
			if err != nil || r.State != tracking.SeenByRecipient || !r.Settled || len(r.History) != 3 {
				t.Fatalf("%s: %s in the copy: %+v, %v; want SEEN_BY_RECIPIENT, settled, 3 entries", step, id, r, err)
			}
		}
	}
	for i := range 20 {
		id := fmt.Sprint("a", i)
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	check("lone write-aheads")
	// One transaction of 3,000 messages with two changes each: about 3 MB
	// of pages, more than the writer's page cache.
	big := &store.Batch{}
	for i := range 3000 {
		m := message(fmt.Sprint("b", i))
		m.Raw = make([]byte, 600)
		big.Messages = append(big.Messages, m)
		big.Changes = append(big.Changes, store.Change{ID: m.ID, State: tracking.DeliveredToServer},
			store.Change{ID: m.ID, State: tracking.SeenByRecipient, Evidence: store.Evidence{From: "b@example.org/x"}})
		ids = append(ids, m.ID)
		settled = append(settled, m.ID)
	}
	if err := s.Commit(ctx, big); err != nil {
		t.Fatal(err)
	}
	check("a large transaction")
	// Enough commits for checkpoints (every 50 pages) to start the WAL
	// over.
	for i := range 300 {
		id := fmt.Sprint("c", i)
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if err := s.Commit(ctx, &store.Batch{Changes: []store.Change{{ID: id, State: tracking.DeliveredToServer},
			{ID: id, State: tracking.SeenByRecipient, Evidence: store.Evidence{From: "b@example.org/x"}}}}); err != nil {
			t.Fatal(err)
		}
		settled = append(settled, id)
	}
	check("after checkpoints")
}

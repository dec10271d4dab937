package sqlite

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// TestCheckpointOffCommitPath: commits never checkpoint (the writer's
// wal_autocheckpoint is 0), the checkpointer copies what they wrote into
// the database file, and Close leaves no WAL behind.
func TestCheckpointOffCommitPath(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	outcomes := make(chan [2]int, 1000)
	s, err := OpenConfig(ctx, p, Config{checkpointed: func(log, done int) { outcomes <- [2]int{log, done} }})
	if err != nil {
		t.Fatal(err)
	}
	var auto int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("the writer's wal_autocheckpoint is %d (%v), want 0", auto, err)
	}
	// More than SQLite's default threshold of 1000 pages.
	for i := range 300 {
		b := &store.Batch{}
		for j := range 10 {
			m := message(fmt.Sprintf("m%d-%d", i, j))
			m.Raw = make([]byte, 2000)
			b.Messages = append(b.Messages, m)
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	last, err := s.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The checkpointer copies every frame of the WAL into the database.
	deadline := time.After(time.Minute)
	for complete := false; !complete; {
		select {
		case o := <-outcomes:
			complete = o[0] > 0 && o[0] == o[1]
		case <-deadline:
			t.Fatal("no complete checkpoint after the commits")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("WAL of %d bytes after Close", fi.Size())
	}
	s, err = Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, err := s.LastCursor(ctx); err != nil || c != last {
		t.Errorf("after reopening: last cursor %d (%v), want %d", c, err, last)
	}
}

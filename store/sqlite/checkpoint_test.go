package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// commitPages commits batches of large messages, pages/5 batches of 20 kB
// (with the indexes, several times pages pages of WAL).
func commitPages(t *testing.T, s *Store, prefix string, pages int, after func()) {
	t.Helper()
	ctx := context.Background()
	for i := range pages / 5 {
		b := &store.Batch{}
		for j := range 10 {
			m := message(fmt.Sprintf("%s%d-%d", prefix, i, j))
			m.Raw = make([]byte, 2000)
			b.Messages = append(b.Messages, m)
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		if after != nil {
			after()
		}
	}
}

// walSize is the size of the WAL file (0 if there is none).
func walSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p + "-wal")
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCheckpointBoundsWAL: commits never checkpoint (the writer's
// wal_autocheckpoint is 0), yet under a steady write load of many times
// the threshold the WAL stays within a few thresholds, by the
// checkpointer's checkpoints alone; Close leaves no WAL behind and
// everything is in the file. Every 25 commits (more than a threshold of
// pages) the writer waits until a checkpoint pass ran since the last such
// point: how far a writer that never waits outruns the checkpointer
// depends on how the machine schedules them (once 56 thresholds, on a
// machine 10 times oversubscribed).
func TestCheckpointBoundsWAL(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	const threshold = 100
	var mu sync.Mutex
	modes := map[string]int{}
	checkpoints := 0
	ran := make(chan struct{}, 1)
	s, err := OpenConfig(ctx, p, Config{checkpointPages: threshold, checkpointed: func(mode string, log, done int) {
		mu.Lock()
		modes[mode]++
		checkpoints++
		mu.Unlock()
		select {
		case ran <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	var auto, pageSize int
	if err := s.w.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("the writer's wal_autocheckpoint is %d (%v), want 0", auto, err)
	}
	if err := s.w.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	// 100 thresholds' worth of pages; without checkpoints the WAL would
	// hold all of them.
	var most int64
	commits, seen := 0, 0
	commitPages(t, s, "m", 100*threshold, func() {
		most = max(most, walSize(t, p))
		if commits++; commits%25 != 0 {
			return
		}
		for {
			mu.Lock()
			n := checkpoints
			mu.Unlock()
			if n > seen {
				seen = n
				return
			}
			select {
			case <-ran:
			case <-time.After(time.Minute): // fail, not hang, without checkpoints
				t.Fatalf("no checkpoint in 25 commits (%d in all)", n)
			}
		}
	})
	// The WAL passes walCap thresholds by what commits append while the
	// checkpointer copies, and more when a RESTART gives up on a slow
	// passive checkpoint. The bound is what matters: 40 thresholds, well
	// below the 100 an unchecked WAL holds.
	limit := int64(10*walCap) * threshold * int64(pageSize+24)
	if most > limit {
		t.Errorf("the WAL grew to %d bytes, more than %d", most, limit)
	}
	mu.Lock()
	t.Logf("largest WAL %d bytes (limit %d); checkpoints %v", most, limit, modes)
	if modes["PASSIVE"] == 0 {
		t.Error("no passive checkpoint ran")
	}
	mu.Unlock()
	last, err := s.LastCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, p); n > 0 {
		t.Errorf("WAL of %d bytes after Close", n)
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

// TestOpenFoldsLeftOverWAL: a WAL left behind by a killed process is
// copied into the database file by Open, before it returns, so that the
// first commits do not compete with that copy.
func TestOpenFoldsLeftOverWAL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := filepath.Join(dir, "s.db")
	s, err := OpenConfig(ctx, p, Config{checkpointPages: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commitPages(t, s, "m", 500, nil)
	// What a SIGKILL leaves: the file and the WAL, the commits in the WAL.
	// ref is the same, its WAL folded by SQLite.
	q, ref := filepath.Join(dir, "killed.db"), filepath.Join(dir, "ref.db")
	for _, to := range []string{q, ref} {
		copyWithWAL(t, p, to)
	}
	fileSize := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before, wal := fileSize(q), walSize(t, q)
	if wal < 400*4096 {
		t.Fatalf("only %d bytes of WAL left behind", wal)
	}
	db, err := sql.Open("sqlite", ref)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	folded := fileSize(ref)
	if folded <= before {
		t.Fatalf("the WAL adds nothing to the file (%d bytes, folded %d)", before, folded)
	}
	k, err := OpenConfig(ctx, q, Config{checkpointPages: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if after := fileSize(q); after < folded {
		t.Errorf("after Open the file has %d bytes (%d before, %d with the WAL folded): the WAL was not folded", after, before, folded)
	}
	if _, err := k.Message(ctx, "m99-9"); err != nil {
		t.Errorf("a message of the WAL: %v", err)
	}
}

// TestCheckpointRestartSparesWriter: a RESTART checkpoint (the WAL past
// walCap thresholds) that finds a long reader of the WAL gives up after
// its own short busy timeout instead of holding the writer's connection
// until the reader ends: a commit made after it goes through while the
// reader still reads. The writer's busy timeout is an hour here, so that
// a checkpoint waiting with it would hold the writer for the whole test.
func TestCheckpointRestartSparesWriter(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	const threshold = 20
	restarted := make(chan struct{})
	var once sync.Once
	s, err := OpenConfig(ctx, p, Config{checkpointPages: threshold, pragmas: []string{"busy_timeout(3600000)"},
		checkpointed: func(mode string, log, done int) {
			if mode == "RESTART" {
				once.Do(func() { close(restarted) })
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commitPages(t, s, "a", threshold, nil)
	// The long reader: a read transaction on the WAL, open until the end.
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	guard := time.NewTimer(time.Minute) // only against a hang: no outcome depends on it
	defer guard.Stop()
	// Commit until a RESTART checkpoint has run (the reader keeps the
	// passive ones from emptying the WAL).
	written := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-restarted:
				written <- nil
				return
			default:
			}
			b := &store.Batch{}
			for j := range 10 {
				m := message(fmt.Sprintf("b%d-%d", i, j))
				m.Raw = make([]byte, 2000)
				b.Messages = append(b.Messages, m)
			}
			if err := s.Commit(ctx, b); err != nil {
				written <- err
				return
			}
		}
	}()
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-guard.C:
		t.Fatal("no RESTART checkpoint came back while a reader read: it holds the writer")
	}
	done := make(chan error, 1)
	go func() { done <- s.Commit(ctx, &store.Batch{Messages: []store.Message{message("after")}}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a commit after the RESTART checkpoint: %v", err)
		}
	case <-guard.C:
		t.Fatal("a commit waited for the reader")
	}
	var busy int
	if err := s.w.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&busy); err != nil || busy != 3600000 {
		t.Errorf("the writer's busy timeout after the checkpoint: %d (%v), want its own, 3600000", busy, err)
	}
	tx.Rollback() // only now does the reader end
}

// TestCloseSparesReader: Close's last checkpoint, which folds the WAL into
// the file, does not wait for another process's reader beyond its own short
// busy timeout: Close returns while the reader still reads, leaving the
// WAL for the next Open. The writer's busy timeout is an hour here.
func TestCloseSparesReader(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "s.db")
	// Shared: the file as another process may read it.
	s, err := OpenConfig(ctx, p, Config{Shared: true, checkpointPages: 1 << 30, pragmas: []string{"busy_timeout(3600000)"}})
	if err != nil {
		t.Fatal(err)
	}
	commitPages(t, s, "a", 20, nil)
	// Another process's reader (a connection with SQLite's ordinary
	// locking), on the WAL until the end.
	other, err := sql.Open("sqlite", p+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM messages").Scan(&n); err != nil || n == 0 {
		t.Fatalf("the reader sees %d messages (%v)", n, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	guard := time.NewTimer(time.Minute) // only against a hang: no outcome depends on it
	defer guard.Stop()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-guard.C:
		t.Fatal("Close waited for another process's reader")
	}
	tx.Rollback() // only now does the reader end
	s, err = Open(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Message(ctx, "a3-9"); err != nil {
		t.Errorf("a message of the WAL left behind: %v", err)
	}
}

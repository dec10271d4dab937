package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
)

// pairTestLayers numbers the layers the tests register: each test counts
// what its own layer did.
var pairTestLayers atomic.Int64

// pairDB opens the database at path through a new pair layer over SQLite's
// default one, on one connection, in WAL mode, never checkpointed, with
// extra pragmas.
func pairDB(t *testing.T, path string, pragmas ...string) (*sql.DB, *pairVFS) {
	t.Helper()
	v, err := registerPairs("", fmt.Sprintf("xmpptrack-pairs-test%d-", pairTestLayers.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	dsn := path + "?vfs=" + v.name + "&_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)"
	for _, p := range pragmas {
		dsn += "&_pragma=" + p
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	mustExec(t, db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
	return db, v
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// onDisk copies the database file and its WAL as the operating system has
// them (what a process killed now leaves) and returns the number of rows
// and the sum of ids that SQLite reads from the copy through its own
// layer, after its integrity check.
func onDisk(t *testing.T, path string) (rows, sum int64) {
	t.Helper()
	cp := filepath.Join(t.TempDir(), "copy.db")
	copyWithWAL(t, path, cp)
	db, err := sql.Open("sqlite", cp)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("the copy's integrity: %q, %v", ok, err)
	}
	if err := db.QueryRow("SELECT count(*), coalesce(sum(id), 0) FROM t").Scan(&rows, &sum); err != nil {
		t.Fatal(err)
	}
	return rows, sum
}

// copyWithWAL copies the database file at from and its WAL to to, as the
// operating system has them (what a process killed now leaves).
func copyWithWAL(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(from + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWALPairs: every frame of lone transactions reaches the WAL with one
// write of its header and page, and the file holds every commit (with
// synchronous=NORMAL, the store's default: no sync after a commit writes
// what a layer might still hold).
func TestWALPairs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	db, v := pairDB(t, path, "synchronous(NORMAL)")
	var pageSize int64
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	frames := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return (fi.Size() - walHeader) / (pageSize + frameHeader)
	}
	before, framesBefore := v.pairs.Load(), frames()
	const n = 200
	for i := 1; i <= n; i++ {
		mustExec(t, db, "INSERT INTO t VALUES (?, randomblob(100))", i)
	}
	written := frames() - framesBefore
	if written < n {
		t.Fatalf("%d frames in the WAL after %d transactions", written, n)
	}
	if got := v.pairs.Load() - before; got != written {
		t.Errorf("%d frames written with one write, want all %d", got, written)
	}
	if rows, sum := onDisk(t, path); rows != n || sum != n*(n+1)/2 {
		t.Errorf("on disk: %d rows, ids summing to %d; want %d and %d", rows, sum, n, n*(n+1)/2)
	}
}

// TestWALPairsOnDisk: after every commit the files hold it, also when
// SQLite spills pages of a transaction to the WAL, writes them again and
// rewrites the frames' checksums at commit (a page cache of 10 pages), when
// a transaction that spilled is rolled back, when the WAL starts again
// after a checkpoint, and with synchronous=FULL (the header and commits
// synced).
func TestWALPairsOnDisk(t *testing.T) {
	for _, sync := range []string{"NORMAL", "FULL"} {
		t.Run(sync, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.db")
			db, v := pairDB(t, path, "cache_size(10)", "synchronous("+sync+")")
			var rows, sum int64
			check := func(step string) {
				t.Helper()
				if r, s := onDisk(t, path); r != rows || s != sum {
					t.Fatalf("%s: on disk %d rows, ids summing to %d; want %d and %d", step, r, s, rows, sum)
				}
			}
			big := func(from, to int64, commit bool) {
				t.Helper()
				tx, err := db.Begin()
				if err != nil {
					t.Fatal(err)
				}
				for i := from; i <= to; i++ {
					if _, err := tx.Exec("INSERT INTO t VALUES (?, randomblob(300))", i); err != nil {
						t.Fatal(err)
					}
				}
				// Written again: pages spilled earlier in the transaction.
				if _, err := tx.Exec("UPDATE t SET v = randomblob(310) WHERE id BETWEEN ? AND ?", from, to); err != nil {
					t.Fatal(err)
				}
				if !commit {
					if err := tx.Rollback(); err != nil {
						t.Fatal(err)
					}
					return
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				rows += to - from + 1
				sum += (from + to) * (to - from + 1) / 2
			}
			lone := func(id int64) {
				t.Helper()
				mustExec(t, db, "INSERT INTO t VALUES (?, randomblob(100))", id)
				rows++
				sum += id
			}

			lone(1)
			check("a lone commit")
			big(2, 2000, true)
			if v.rewrites.Load() == 0 {
				t.Fatal("no frame header rewritten: the transaction did not spill and write its pages again")
			}
			check("a transaction that spilled")
			lone(2001)
			check("a lone commit after it")
			big(3000, 5000, false)
			lone(5001)
			check("a lone commit after a rolled back transaction that spilled")
			big(5100, 5500, false)
			// Another writer of the file (another process with
			// Config.Shared, another Store of the process) commits where
			// the rolled back transaction had spilled its frames.
			other, err := sql.Open("sqlite", path+"?_pragma=synchronous("+sync+")")
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			mustExec(t, other, "INSERT INTO t VALUES (5600, randomblob(5000))")
			rows++
			sum += 5600
			check("another writer's commit after a rolled back transaction that spilled")
			lone(5601)
			check("a lone commit after another writer's")
			mustExec(t, db, "PRAGMA wal_checkpoint(RESTART)")
			pairs := v.pairs.Load()
			lone(5002)
			if v.pairs.Load() == pairs {
				t.Error("no frame written with one write after the WAL started again")
			}
			check("a lone commit in a WAL started again")
			big(6000, 7000, true)
			check("a transaction that spilled, in a WAL started again")
		})
	}
}

// TestStoreWALPairs: the store's writer writes its WAL through the layer:
// a write-ahead's two frames (its row and its id's index entry) with one
// write each; with noPairs, as SQLite writes them.
func TestStoreWALPairs(t *testing.T) {
	v, err := pairsOver(exclusiveVFS)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		noPairs  bool
		min, max int64
	}{{false, 200, 1000}, {true, 0, 0}} {
		s, _, _ := openNoCheckpoints(t, Config{noPairs: c.noPairs})
		before := v.pairs.Load()
		for i := range 100 {
			if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{message(fmt.Sprint("m", i))}}); err != nil {
				t.Fatal(err)
			}
		}
		if got := v.pairs.Load() - before; got < c.min || got > c.max {
			t.Errorf("noPairs %v: 100 write-aheads wrote %d frames with one write, want %d to %d", c.noPairs, got, c.min, c.max)
		}
	}
}

//go:build linux

package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
)

// The tests of a store's file for its process: only Linux has the lock
// that keeps other processes out (elsewhere a store shares its file).

// TestOneProcess: by default a store takes its file for its process: while
// it is open, another process's Open fails with store.ErrLocked, with
// Config.Shared or without, and its wal-index is in the process's memory
// (no path-shm). Once it is closed the other process opens the file. With
// Config.Shared, other processes open it with Config.Shared, not without.
func TestOneProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	opens := func(shared bool) string {
		t.Helper()
		prefix := ""
		if shared {
			prefix = "shared"
		}
		cmd, sc := child(t, "opener", path, prefix)
		defer cmd.Wait()
		if !sc.Scan() {
			t.Fatal("the child said nothing")
		}
		return sc.Text()
	}
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
	if _, err := os.Stat(path + "-shm"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("path-shm of a store with its file to itself: %v, want none", err)
	}
	for _, shared := range []bool{false, true} {
		if got := opens(shared); got != "locked" {
			t.Errorf("another process's Open (Shared %v) while the store is open: %s, want locked", shared, got)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := opens(false); got != "ok" {
		t.Errorf("another process's Open after Close: %s, want ok", got)
	}
	s, err = OpenConfig(ctx, path, Config{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Message(ctx, "a"); err != nil {
		t.Errorf("the message committed before: %v", err)
	}
	if got := opens(true); got != "ok" {
		t.Errorf("another process's shared Open while a shared store is open: %s, want ok", got)
	}
	if got := opens(false); got != "locked" {
		t.Errorf("another process's Open without Shared while a shared store is open: %s, want locked", got)
	}
}

// TestSecondStoreKeepsLock: a second Store of the same process on the file
// (opened and closed while the first stays open) leaves the process's lock
// on the file in place: another process's Open is still refused. (Open
// used to read the file's header through a descriptor of its own, whose
// close dropped every POSIX lock of the process on the file, SQLite's
// included.)
func TestSecondStoreKeepsLock(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Message(ctx, "a"); err != nil {
		t.Errorf("the second store reads the first one's message: %v", err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	cmd, sc := child(t, "opener", path, "")
	defer cmd.Wait()
	if !sc.Scan() || sc.Text() != "locked" {
		t.Errorf("another process's Open while the first store is open: %q, want locked", sc.Text())
	}
	commitT(t, s, &store.Batch{Messages: []store.Message{message("b")}})
}

func init() { systemChildren["stray"] = childStray }

// childStray opens the store (its file for this process), commits a-0..9,
// then opens and closes a descriptor of the file of its own, as any code of
// the process reading the file may (a backup, a checksum), says "ready",
// waits for a line on its standard input, commits b-0..9, printing "ok id"
// after each commit, says "done" and waits to be killed.
func childStray(path string) {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	commit := func(prefix string) bool {
		for i := range 10 {
			id := fmt.Sprintf("%s-%d", prefix, i)
			if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
				fmt.Println("error", err)
				return false
			}
			fmt.Println("ok", id)
		}
		return true
	}
	if !commit("a") {
		return
	}
	if f, err := os.Open(path); err == nil {
		f.Close() // drops every POSIX lock of the process on the file
	}
	fmt.Println("ready")
	bufio.NewScanner(os.Stdin).Scan()
	if !commit("b") {
		return
	}
	fmt.Println("done")
	select {}
}

// childIn starts the child of kind on path, as child does, with a pipe to
// its standard input: it is killed and waited for when the test ends.
func childIn(t *testing.T, kind, path string) (*exec.Cmd, io.Writer, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "XMPPTRACK_SQLITE_CHILD="+kind, "XMPPTRACK_SQLITE_PATH="+path)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, in, bufio.NewScanner(out)
}

// TestStrayCloseKeepsLock: a close of a descriptor of the database file
// elsewhere in the process (which drops SQLite's POSIX locks) does not let
// another process open the file while the store has it: that process's
// Open is refused, and every commit the store acknowledged survives its
// SIGKILL. (With SQLite's lock alone, the other process opened the file,
// built an index of the WAL of its own and deleted the WAL at its Close;
// the store's later commits went to the deleted WAL and were lost.)
func TestStrayCloseKeepsLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	cmd, in, sc := childIn(t, "stray", path)
	var acked []string
	read := func(until string) {
		for sc.Scan() && sc.Text() != until {
			id, ok := strings.CutPrefix(sc.Text(), "ok ")
			if !ok {
				t.Fatalf("child: %s", sc.Text())
			}
			acked = append(acked, id)
		}
	}
	read("ready")
	link := filepath.Join(filepath.Dir(path), "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, link} {
		o, osc := child(t, "opener", p, "")
		osc.Scan()
		got := osc.Text()
		o.Wait()
		if got != "locked" {
			t.Errorf("another process's Open of %s after a stray close in the store's process: %q, want locked", filepath.Base(p), got)
		}
	}
	// Another SQLite program (this test's process, with SQLite's ordinary
	// locking): refused too; had it read the file, its close would have
	// folded and deleted the WAL the store appends to.
	db, err := sql.Open("sqlite", path+"?_busy_timeout=100")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	err = db.QueryRow("SELECT count(*) FROM messages").Scan(&n)
	db.Close()
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("another SQLite program's read after a stray close in the store's process: %d messages, %v; want database is locked", n, err)
	}
	fmt.Fprintln(in, "go")
	read("done")
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var lost []string
	for _, id := range acked {
		if _, err := s.Message(context.Background(), id); err != nil {
			lost = append(lost, id)
		}
	}
	if len(acked) != 20 || len(lost) > 0 {
		t.Errorf("%d acknowledged commits, lost after SIGKILL: %v", len(acked), lost)
	}
}

// TestMixedModesRefused: the stores of a process on one file all have the
// same Config.Shared: one with the other is refused with store.ErrLocked,
// at once, and the first keeps working.
func TestMixedModesRefused(t *testing.T) {
	ctx := context.Background()
	for _, first := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "s.db")
		s, err := OpenConfig(ctx, path, Config{Shared: first})
		if err != nil {
			t.Fatal(err)
		}
		if other, err := OpenConfig(ctx, path, Config{Shared: !first}); !errors.Is(err, store.ErrLocked) {
			if err == nil {
				other.Close()
			}
			t.Errorf("Shared %v after Shared %v in one process: %v, want ErrLocked", !first, first, err)
		}
		commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOtherNamesShareLock: the process's locks on a file are the file's,
// not a name's. Under another name of the file (a symlink, a hard link), a
// store with Config.Shared is refused (store.ErrLocked) while a default
// store has the file, and the other way round; a second default store
// through a symlink shares the first one's locks: it reads the first one's
// messages, an owner's lock held by the one refuses the other, and once
// it is closed another process's Open is still refused.
// Through a hard link (SQLite would keep another WAL) it is refused. (The locks used to be kept by the name of path-lock: the Shared
// store was accepted, and the second default store was refused at the
// PENDING lock, whose close dropped the first one's SQLite locks.)
func TestOtherNamesShareLock(t *testing.T) {
	for _, kind := range []string{"symlink", "hardlink"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "s.db")
			link := filepath.Join(dir, "link.db")
			s, err := Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			commitT(t, s, &store.Batch{Messages: []store.Message{message("a")}})
			if kind == "symlink" {
				err = os.Symlink("s.db", link)
			} else {
				err = os.Link(path, link)
			}
			if err != nil {
				t.Fatal(err)
			}
			if sh, err := OpenConfig(ctx, link, Config{Shared: true}); !errors.Is(err, store.ErrLocked) {
				if err == nil {
					sh.Close()
				}
				t.Fatalf("a Shared Open of %s while a default store has %s: %v, want ErrLocked", kind, path, err)
			}
			s2, err := Open(ctx, link)
			if kind == "hardlink" {
				// SQLite keeps a WAL per name, symlinks resolved: a hard
				// link of a file open in the process is refused.
				if !errors.Is(err, store.ErrLocked) {
					if err == nil {
						s2.Close()
					}
					t.Fatalf("a default Open through the hard link: %v, want ErrLocked", err)
				}
				commitT(t, s, &store.Batch{Messages: []store.Message{message("b")}})
			} else {
				if err != nil {
					t.Fatalf("a second default Open through the %s: %v", kind, err)
				}
				if _, err := s2.Message(ctx, "a"); err != nil {
					t.Errorf("the second store reads the first one's message: %v", err)
				}
				commitT(t, s2, &store.Batch{Messages: []store.Message{message("b")}})
				// The ownership locks are the file's too.
				l, err := s.Lock(ctx, owner)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s2.Lock(ctx, owner); !errors.Is(err, store.ErrLocked) {
					t.Errorf("Lock through the %s while the first store holds it: %v, want ErrLocked", kind, err)
				}
				l.Release()
				if err := s2.Close(); err != nil {
					t.Fatal(err)
				}
			}
			for _, name := range []string{path, link} {
				cmd, sc := child(t, "opener", name, "")
				if !sc.Scan() || sc.Text() != "locked" {
					t.Errorf("another process's Open of %s after the second store's Close: %q, want locked", name, sc.Text())
				}
				cmd.Wait()
			}
			commitT(t, s, &store.Batch{Messages: []store.Message{message("c")}})
			if _, err := s.Message(ctx, "b"); err != nil {
				t.Errorf("the first store reads the second one's message: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// And the other way round: a Shared store first.
			sh, err := OpenConfig(ctx, path, Config{Shared: true})
			if err != nil {
				t.Fatal(err)
			}
			defer sh.Close()
			if d, err := Open(ctx, link); !errors.Is(err, store.ErrLocked) {
				if err == nil {
					d.Close()
				}
				t.Fatalf("a default Open of the %s while a Shared store has %s: %v, want ErrLocked", kind, path, err)
			}
			if _, err := sh.Message(ctx, "c"); err != nil {
				t.Errorf("the Shared store after the refused Open: %v", err)
			}
		})
	}
}

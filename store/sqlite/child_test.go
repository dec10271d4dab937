package sqlite

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	testchild "github.com/xmpptrack/xmpptrack/internal/testkit/child"
	"github.com/xmpptrack/xmpptrack/store"
)

// The test binary doubles as the child process of the crash tests.
func TestMain(m *testing.M) {
	switch os.Getenv("XMPPTRACK_SQLITE_CHILD") {
	case "writer":
		childWriter(os.Getenv("XMPPTRACK_SQLITE_PATH"), os.Getenv("XMPPTRACK_SQLITE_PREFIX"))
		os.Exit(0)
	case "locker":
		childLocker(os.Getenv("XMPPTRACK_SQLITE_PATH"))
		os.Exit(0)
	case "opener":
		childOpener(os.Getenv("XMPPTRACK_SQLITE_PATH"), os.Getenv("XMPPTRACK_SQLITE_PREFIX") == "shared")
		os.Exit(0)
	}
	if f := systemChildren[os.Getenv("XMPPTRACK_SQLITE_CHILD")]; f != nil {
		f(os.Getenv("XMPPTRACK_SQLITE_PATH"))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// systemChildren are the children of the tests of one system (a file with a
// build tag registers them at init).
var systemChildren = map[string]func(path string){}

var owner = store.Instance{Account: "a@example.org", Resource: "r"}

// childWriter commits from 4 goroutines and prints the id of each message
// whose Commit returned nil, until it is killed.
func childWriter(path, prefix string) {
	s, err := Open(context.Background(), path)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("%s-%d-%d", prefix, w, i)
				if err := s.Commit(context.Background(), &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
					fmt.Println("error", err)
					return
				}
				mu.Lock()
				fmt.Println("ok", id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// childLocker takes owner's lock, says so, and waits to be killed. It
// opens the store with Config.Shared, as TestLockAcrossProcesses's parent
// does.
func childLocker(path string) {
	s, err := OpenConfig(context.Background(), path, Config{Shared: true})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	if _, err := s.Lock(context.Background(), owner); err != nil {
		fmt.Println("error", err)
		return
	}
	fmt.Println("locked")
	select {}
}

// childOpener opens the store (with Config.Shared if shared), closes it
// and says how that went: "ok", "locked" (store.ErrLocked) or the error.
func childOpener(path string, shared bool) {
	s, err := OpenConfig(context.Background(), path, Config{Shared: shared})
	switch {
	case errors.Is(err, store.ErrLocked):
		fmt.Println("locked")
	case err != nil:
		fmt.Println("error", err)
	default:
		s.Close()
		fmt.Println("ok")
	}
}

func child(t *testing.T, kind, path, prefix string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	return testchild.Start(t, nil, "^$", "XMPPTRACK_SQLITE_CHILD="+kind, "XMPPTRACK_SQLITE_PATH="+path, "XMPPTRACK_SQLITE_PREFIX="+prefix)
}

// TestKillDurability kills a writing process with SIGKILL at random
// moments, three times on one file: every message whose Commit had
// returned is in the store afterwards (the default durability).
func TestKillDurability(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	var acked []string
	for round := range 3 {
		cmd, sc := child(t, "writer", path, fmt.Sprint("r", round))
		stopAt := 200 + rand.IntN(300)
		for n := 0; n < stopAt && sc.Scan(); n++ {
			line := sc.Text()
			id, ok := strings.CutPrefix(line, "ok ")
			if !ok {
				t.Fatalf("child: %s", line)
			}
			acked = append(acked, id)
		}
		cmd.Process.Kill() // SIGKILL
		// Lines already written by the child were acknowledged too.
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
				acked = append(acked, id)
			}
		}
		cmd.Wait()
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	for _, id := range acked {
		if _, err := s.Message(context.Background(), id); err != nil {
			t.Fatalf("acknowledged message %s lost: %v", id, err)
		}
	}
	// And each is pending (written ahead unlisted, never swept: what a
	// restart's reload reads).
	pending := map[string]bool{}
	for _, id := range pendingIDs(t, s, message("x").Owner) {
		if pending[id] {
			t.Fatalf("Pending reports %s twice", id)
		}
		pending[id] = true
	}
	for _, id := range acked {
		if !pending[id] {
			t.Fatalf("acknowledged message %s not pending after the kills", id)
		}
	}
	t.Logf("%d acknowledged messages survived 3 kills, %d pending", len(acked), len(pending))
}

// TestLockAcrossProcesses: another process's lock refuses ours while it
// lives, and its death (SIGKILL) releases it at once.
func TestLockAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	s, err := OpenConfig(context.Background(), path, Config{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd, sc := child(t, "locker", path, "")
	if !sc.Scan() || sc.Text() != "locked" {
		t.Fatalf("child: %q", sc.Text())
	}
	if _, err := s.Lock(context.Background(), owner); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("while the other process holds it: %v, want ErrLocked", err)
	}
	other := store.Instance{Account: owner.Account, Resource: "other"}
	if _, err := s.Lock(context.Background(), other); err != nil {
		t.Fatalf("another resource: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := s.Lock(context.Background(), owner)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Release()
}

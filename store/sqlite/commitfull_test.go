//go:build unix

package sqlite

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

func init() { systemChildren["fsize"] = childFileSize }

// childFileSize runs TestCommitTimeFull's steps in a process of its own
// (the file size limit is the whole process's), printing "error ..." for
// what went wrong and "done" at the end.
func childFileSize(p string) {
	defer fmt.Println("done")
	signal.Ignore(syscall.SIGXFSZ)
	ctx := context.Background()
	s, err := Open(ctx, p)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer s.Close()
	ack := []store.Change{{ID: "m1", State: tracking.DeliveredToServer}}
	for _, id := range []string{"m1", "m2", "m3"} {
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}}); err != nil {
			fmt.Println("error", err)
			return
		}
	}
	fi, err := os.Stat(p + "-wal")
	if err != nil {
		fmt.Println("error", err)
		return
	}
	var old syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old)
	lim := old
	setLimit(&lim.Cur, fi.Size()) // the WAL cannot grow: the next frames fail at COMMIT
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		fmt.Println("error", err)
		return
	}
	var failed []string
	for i := 0; i < 200 && len(failed) < 3; i++ {
		id := fmt.Sprint("f", i)
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}, Changes: ack}); err != nil {
			failed = append(failed, id)
		}
	}
	if len(failed) == 0 {
		fmt.Println("error the WAL never reached the limit")
		return
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		fmt.Println("error", err)
		return
	}
	for _, id := range []string{"a1", "a2"} {
		if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{message(id)}, Changes: ack}); err != nil {
			fmt.Println("error after the limit was lifted:", err)
		}
	}
	for _, id := range failed {
		if _, err := s.Message(ctx, id); err == nil {
			fmt.Println("error the failed", id, "was stored")
		}
	}
	r, err := s.Message(ctx, "m1")
	if err != nil || r.State != tracking.DeliveredToServer || len(r.History) != 2 {
		fmt.Printf("error m1: %v with %d changes (%v), want DELIVERED_TO_SERVER with 2\n", r.State, len(r.History), err)
	}
}

// TestCommitTimeFull: the file system refuses the WAL's growth (as a full
// disk does) while a commit writes its frames: those commits fail and store
// nothing, the writer is not left in a transaction, and commits succeed
// again once there is room.
func TestCommitTimeFull(t *testing.T) {
	cmd, sc := child(t, "fsize", filepath.Join(t.TempDir(), "s.db"), "")
	defer cmd.Wait()
	done := false
	for sc.Scan() {
		line := sc.Text()
		if line == "done" {
			done = true
			break
		}
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			t.Error(msg)
		}
	}
	if !done {
		t.Fatal("the child ended early")
	}
}

// setLimit sets a resource limit's value, whose type is uint64 on Linux and
// int64 on FreeBSD.
func setLimit[T int64 | uint64](limit *T, v int64) { *limit = T(v) }

//go:build unix && !linux

package testserver

import (
	"errors"
	"syscall"
	"testing"
	"time"
)

// groupGone requires every process of process group pgid (a server's, led by
// its reaper) to exit soon after Stop. Without /proc and pidfds (Linux) it
// polls the group with signal 0 until none is left.
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := syscall.Kill(-pgid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("process group %d still runs 30 s after Stop (%v)", pgid, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

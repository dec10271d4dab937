//go:build linux

package testserver

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startStraggler starts, guarded by a reaper, a shell that starts a
// straggler (a sleep in the background, in the group) and prints its PID,
// then exits, or with stay, sleeps too. It returns the process and a pidfd
// of the straggler.
func startStraggler(t *testing.T, dir string, stay bool) (*process, int) {
	t.Helper()
	script := "sleep 300 </dev/null >/dev/null 2>&1 & echo $!"
	if stay {
		script += "; exec sleep 300"
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Stdout = w
	p, err := startGuarded(cmd, dir)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done; p.reaper.cmd.Process.Kill(); p.reaper.sweep() })
	line, err := bufio.NewReader(r).ReadString('\n')
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	if pid == 0 {
		t.Fatalf("the shell wrote %q, %v; want the straggler's PID", line, err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); unix.Close(fd) })
	if processGroup(pid) != p.reaper.pgid() {
		t.Fatalf("straggler %d is in group %d, want the reaper's %d", pid, processGroup(pid), p.reaper.pgid())
	}
	return p, fd
}

// TestSweepKillsStraggler: once the server process is stopped and reaped,
// the reaper's sweep kills what it left in its group, and leaves the
// directory (a restart reuses it).
func TestSweepKillsStraggler(t *testing.T) {
	dir := t.TempDir()
	p, fd := startStraggler(t, dir, false)
	<-p.done
	p.reaper.sweep()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := waitPidfd(ctx, fd); err != nil {
		t.Fatalf("the straggler survived the sweep: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the sweep touched the directory: %v", err)
	}
}

// TestReaperEndOfFile: when the harness's end of the pipe closes without a
// sweep (the harness's process died), the reaper kills the whole group, the
// running server process included, and the directory is removed.
func TestReaperEndOfFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600)
	p, fd := startStraggler(t, dir, true)
	p.reaper.w.Close() // as the kernel does when this process dies
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatal("the server process survived")
	}
	if err := waitPidfd(ctx, fd); err != nil {
		t.Fatalf("the straggler survived: %v", err)
	}
	if err := waitRemoved(ctx, dir); err != nil {
		t.Fatal(err)
	}
}

// waitRemoved waits until dir is removed (inotify: IN_DELETE_SELF).
func waitRemoved(ctx context.Context, dir string) error {
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return err
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, dir, unix.IN_DELETE_SELF); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return err
	}
	if err := waitPidfd(ctx, in); err != nil { // readable once the event is queued
		return errors.New(dir + " was not removed")
	}
	return nil
}

//go:build linux

package testserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmpptrack/xmpptrack/internal/testkit/child"
)

// orphanEnv names the server kind a child of TestServersDieWithParent starts.
const orphanEnv = "XMPPTRACK_TESTSERVER_ORPHAN"

// TestServersDieWithParent starts a child process that starts a server
// through the harness and prints the PID of every process it started (its
// descendants); then it SIGKILLs the child, so that no cleanup of the child
// runs, and requires every one of those processes to exit. The processes are
// watched through pidfds opened while the child still lived (checked against
// their start time), so a PID reused by an unrelated process is never waited
// for, nor signalled.
func TestServersDieWithParent(t *testing.T) {
	if kind := os.Getenv(orphanEnv); kind != "" {
		orphanChild(t, kind)
		return
	}
	for _, kind := range []string{string(Prosody), string(Ejabberd), "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			requireKind(t, kind)
			cmd, out := child.Start(t, nil, "^TestServersDieWithParent$", orphanEnv+"="+kind)
			type watched struct {
				pid  int
				name string
				fd   int
			}
			var (
				procs  []watched
				listed = map[string]bool{} // the names of the processes listed
				dir    string
				ready  bool
			)
			for !ready && out.Scan() {
				f := strings.Fields(out.Text())
				switch {
				case len(f) == 2 && f[0] == "dir":
					dir = f[1]
				case len(f) == 4 && f[0] == "pid":
					listed[f[3]] = true
					// A process that exited since the child listed it (a
					// PostgreSQL backend of the child's psql, which ends
					// after its client) has nothing left to outlive the
					// child: it is not watched.
					pid, _ := strconv.Atoi(f[1])
					fd, err := unix.PidfdOpen(pid, 0)
					if errors.Is(err, unix.ESRCH) {
						t.Logf("%s (%d) exited before it was watched", f[3], pid)
						continue
					}
					if err != nil {
						t.Fatalf("pidfd of %s (%d): %v", f[3], pid, err)
					}
					t.Cleanup(func() { unix.Close(fd) })
					// The pidfd is taken: if the start time still matches,
					// it refers to the process the child reported;
					// otherwise that one exited and its PID was reused.
					if startTime(pid) != f[2] {
						t.Logf("%s (%d) exited before it was watched (its PID was taken again)", f[3], pid)
						continue
					}
					procs = append(procs, watched{pid, f[3], fd})
				case len(f) == 1 && f[0] == "ready":
					ready = true
				}
			}
			if !ready {
				t.Fatalf("the child ended before its server was ready: %v", out.Err())
			}
			if dir == "" || len(procs) == 0 {
				t.Fatalf("the child reported dir %q and %d processes", dir, len(procs))
			}
			// Only a passing process may be gone before it is watched (a
			// backend): each program listed has one watched, the server's
			// main process among them.
			for _, p := range procs {
				delete(listed, p.name)
			}
			if len(listed) > 0 {
				t.Fatalf("no process of %v was left to watch: the server died at its start", slices.Sorted(maps.Keys(listed)))
			}
			var names []string
			for _, p := range procs {
				names = append(names, fmt.Sprintf("%s(%d)", p.name, p.pid))
			}
			t.Logf("%s: child %d started %s", kind, cmd.Process.Pid, strings.Join(names, " "))

			cmd.Process.Kill()
			cmd.Wait()

			// Wait for every process to exit, up to a bound that only a
			// failure reaches.
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			for _, p := range procs {
				if err := waitPidfd(ctx, p.fd); err != nil {
					t.Errorf("%s (pid %d) still runs after its harness's process was killed: %v", p.name, p.pid, err)
					// Ours (the pidfd proves it): do not leave it behind.
					unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0)
				}
			}
			// The directory goes too, once its processes are gone.
			if err := waitRemoved(ctx, dir); err != nil {
				t.Errorf("directory %s left behind: %v", dir, err)
				if strings.HasPrefix(filepath.Base(dir), "xmpptrack-") {
					os.RemoveAll(dir)
				}
			}
		})
	}
}

// orphanChild is the child of TestServersDieWithParent: it starts a server,
// prints its directory and every process it started, then waits to be killed.
func orphanChild(t *testing.T, kind string) {
	// Never outlive the parent test.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	ctx := context.Background()
	var dir string
	switch kind {
	case "postgres":
		p, err := LaunchPostgres(ctx, PostgresOptions{NoFsync: true})
		if err != nil {
			t.Fatal(err)
		}
		dir = p.Dir()
		// Backends are started on demand: start one (it ends with its
		// client, so it may be gone before the parent watches it).
		if _, err := p.SQL(ctx, "postgres", "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	default:
		s, err := Launch(ctx, Kind(kind), Options{Accounts: []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		dir = s.Dir()
	}
	fmt.Printf("dir %s\n", dir)
	for _, p := range descendants(os.Getpid()) {
		if st := startTime(p); st != "" {
			fmt.Printf("pid %d %s %s\n", p, st, processName(p))
		}
	}
	fmt.Println("ready")
	for {
		time.Sleep(time.Hour) // until the parent kills this process
	}
}

// startTime returns the start time of process pid (field 22 of its stat, in
// clock ticks since boot), or "" if it is gone.
func startTime(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// waitPidfd waits until the process of a pidfd has exited (or any file
// descriptor is readable).
func waitPidfd(ctx context.Context, fd int) error {
	for {
		ms := 100
		if dl, ok := ctx.Deadline(); ok {
			ms = max(min(int(time.Until(dl).Milliseconds()), 1000), 0)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// groupGone requires every process of process group pgid (a server's, led by
// its reaper) to exit soon after Stop: Stop has killed the group's
// stragglers, which may still be exiting. Zombies count as gone (their
// parent, init after the reaper, reaps them).
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || processGroup(pid) != pgid {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue // gone meanwhile
		}
		if processGroup(pid) == pgid { // still that process (checked after the pidfd)
			if err := waitPidfd(ctx, fd); err != nil {
				t.Errorf("%s (pid %d) of process group %d still runs after Stop: %v", processName(pid), pid, pgid, err)
			}
		}
		unix.Close(fd)
	}
}

// processGroup returns the process group of pid from /proc, or 0.
func processGroup(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0
	}
	g, _ := strconv.Atoi(f[2])
	return g
}

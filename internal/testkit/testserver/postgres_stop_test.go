package testserver

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPostgresFailedStartStopped: a PostgreSQL start that fails (every
// port it is given is taken) returns errPortTaken within its start-up
// bound, after stopping what it started: no process of the attempts is
// left (each postmaster and its reaper were reaped) and the cluster's
// directory is removed.
func TestPostgresFailedStartStopped(t *testing.T) {
	require(t, "PostgreSQL", PostgresAvailable())
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	// The cluster's directory goes in a directory of the test's own,
	// which the unprivileged user PostgreSQL runs as can reach.
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	before := children(t)
	done := make(chan error, 1)
	go func() {
		p, err := launchPostgres(t.Context(), PostgresOptions{NoFsync: true, Logf: t.Logf}, func() (int, error) { return port, nil })
		if p != nil {
			p.Stop()
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute): // not a measure: the start-up bound is 60 s
		t.Fatal("LaunchPostgres still runs 2 minutes after it began, past its start-up bound")
	}
	if !errors.Is(err, errPortTaken) {
		t.Fatalf("LaunchPostgres on a taken port: %v, want errPortTaken", err)
	}
	if left := children(t); len(left) > len(before) {
		t.Errorf("child processes %v after the failed start, %v before", left, before)
	}
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("the temporary directory holds %v (%v) after the failed start", entries, err)
	}
}

// children lists the processes whose parent is the test's process.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("no /proc: %v", err)
	}
	self := strconv.Itoa(os.Getpid())
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // ended meanwhile
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 && f[1] == self {
			pids = append(pids, pid)
		}
	}
	return pids
}

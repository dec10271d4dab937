//go:build unix

package testserver

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestReservePortRange: ports come from outside the ephemeral range, where
// no other program's port-0 listener or outgoing connection can take them,
// each held by a lock that another process (an flock through a second open
// file, as another process would take it) cannot take, and that keeps the
// port from being handed out while it is held. Where the range leaves too
// few ports, the fallback (the kernel's choice) is checked instead.
func TestReservePortRange(t *testing.T) {
	ranges, ok := portRanges()
	port, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	ports.Lock()
	lock, held := ports.used[port]
	ports.Unlock()
	if !held {
		t.Fatalf("port %d is not recorded as reserved", port)
	}
	if !ok {
		t.Logf("fallback: %s", portFallback())
		if lock != nil {
			t.Errorf("port %d from the kernel has a lock file", port)
		}
		if c, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			t.Errorf("port %d from the kernel cannot be bound: %v", port, err)
		} else {
			c.Close()
		}
		releasePort(port)
		return
	}
	if !slices.ContainsFunc(ranges, func(r [2]int) bool { return port >= r[0] && port < r[1] }) {
		t.Errorf("port %d outside %v", port, ranges)
	}
	if lock == nil {
		t.Fatalf("port %d is reserved without its lock", port)
	}
	if st, err := os.Lstat(portLockDir); err != nil || st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("%s: %v, %v; want a sticky world-writable directory", portLockDir, st.Mode(), err)
	}
	other, err := os.Open(filepath.Join(portLockDir, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Errorf("another process could lock reserved port %d: %v", port, err)
	}
	if ok, err := claimPort(port); ok || err != nil {
		t.Errorf("port %d claimed twice (%v)", port, err)
	}
	releasePort(port)
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("released port %d is still locked: %v", port, err)
	}
	// Held by "another process" now: skipped, without an error.
	if ok, err := claimPort(port); ok || err != nil {
		t.Errorf("port %d locked elsewhere: claimed %v, %v", port, ok, err)
	}
}

// boundPort returns a port that a socket holds bound but not listening, the
// way an outgoing connection's source port holds it: a server cannot bind it
// and nothing accepts on it.
func boundPort(t *testing.T) int {
	t.Helper()
	syscall.ForkLock.RLock() // no exec between the socket and CloseOnExec
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

// TestLaunchRetriesTakenPort: the first port handed to Launch is taken by a
// socket that does not listen (the CI failure of 2026-12-06: Prosody logged
// "in use by another application" and ran on without a client port). Launch
// must see it in this run's log, stop that server and start on another port
// well within the start-up bound, instead of waiting out the bound for a
// port that never opens.
func TestLaunchRetriesTakenPort(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			requireKind(t, string(kind))
			taken := boundPort(t)
			s, err := launch(t.Context(), kind, Options{Logf: t.Logf, StartTimeout: 20 * time.Second, Accounts: []string{"a"}}, takenFirst(taken))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			if s.port == taken {
				t.Fatalf("started on the taken port %d", taken)
			}
		})
	}
}

// TestLaunchPostgresRetriesTakenPort: PostgreSQL exits when it cannot bind
// its port; LaunchPostgres must start it again on another port.
func TestLaunchPostgresRetriesTakenPort(t *testing.T) {
	requireKind(t, "postgres")
	taken := boundPort(t)
	p, err := launchPostgres(t.Context(), PostgresOptions{NoFsync: true, Logf: t.Logf}, takenFirst(taken))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.port == taken {
		t.Fatalf("started on the taken port %d", taken)
	}
}

// takenFirst returns a port reservation that hands out taken first, then
// reserves as Launch does.
func takenFirst(taken int) func() (int, error) {
	first := true
	return func() (int, error) {
		if first {
			first = false
			return taken, nil
		}
		return reservePort()
	}
}

package testserver

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestReservePortRange: ports come from below the ephemeral range, where no
// other program's port-0 listener or outgoing connection can take them, and
// another process's reservation (an flock on the port's file, taken here
// through a second open file) keeps them from being handed out twice.
func TestReservePortRange(t *testing.T) {
	lo, hi := portRange()
	if hi <= lo {
		t.Skip("no port range below the ephemeral one here")
	}
	port, err := reservePort()
	if err != nil {
		t.Fatal(err)
	}
	if port < lo || port >= hi {
		t.Errorf("port %d outside [%d, %d)", port, lo, hi)
	}
	name := filepath.Join(os.TempDir(), "xmpptrack-ports", strconv.Itoa(port))
	other, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Errorf("another process could lock reserved port %d: %v", port, err)
	}
	if claimPort(port) {
		t.Errorf("port %d claimed twice", port)
	}
	releasePort(port)
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("released port %d is still locked: %v", port, err)
	}
	syscall.Flock(int(other.Fd()), syscall.LOCK_UN)

	// A port held by "another process" is skipped.
	if err := syscall.Flock(int(other.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if claimPort(port) {
		t.Errorf("port %d locked elsewhere was claimed", port)
	}
}

// boundPort returns a port that a socket holds bound but not listening, the
// way an outgoing connection's source port holds it: a server cannot bind it
// and nothing accepts on it.
func boundPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
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
			first := true
			reserve := func() (int, error) {
				if first {
					first = false
					return taken, nil
				}
				return reservePort()
			}
			s, err := launch(t.Context(), kind, Options{Logf: t.Logf, StartTimeout: 20 * time.Second, Accounts: []string{"a"}}, reserve)
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
	first := true
	reserve := func() (int, error) {
		if first {
			first = false
			return taken, nil
		}
		return reservePort()
	}
	p, err := launchPostgres(t.Context(), PostgresOptions{NoFsync: true, Logf: t.Logf}, reserve)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	if p.port == taken {
		t.Fatalf("started on the taken port %d", taken)
	}
}

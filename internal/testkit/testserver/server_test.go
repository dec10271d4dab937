package testserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
)

// login opens a STARTTLS session with certificate verification on and SASL
// PLAIN, and returns the bound JID.
func login(ctx context.Context, t testing.TB, s *Server, local, password string) (string, error) {
	t.Helper()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sess, err := xmpp.NewClientSession(ctx, s.JID(local), conn,
		xmpp.StartTLS(s.TLSConfig()),
		xmpp.SASL("", password, sasl.Plain),
		xmpp.BindResource(),
	)
	if err != nil {
		return "", err
	}
	defer sess.Close()
	if v := sess.ConnectionState().Version; v != tls.VersionTLS13 && v != tls.VersionTLS12 {
		t.Errorf("TLS version %#x", v)
	}
	return sess.LocalAddr().String(), nil
}

func TestServers(t *testing.T) {
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			s := Start(t, kind, Options{Accounts: []string{"alice", "bob", "carol"}})
			t.Logf("%s started in %v", kind, s.StartupTime())
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()

			if got := s.Accounts(); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
				t.Fatalf("Accounts() = %v", got)
			}
			for _, local := range s.Accounts() {
				bound, err := login(ctx, t, s, local, s.Password(local))
				if err != nil {
					t.Fatalf("login %s: %v", local, err)
				}
				if !strings.HasPrefix(bound, local+"@localhost/") {
					t.Errorf("bound %q", bound)
				}
			}
			if _, err := login(ctx, t, s, "alice", "wrong"); err == nil {
				t.Error("login with a wrong password succeeded")
			}

			// Accounts added later work, and survive a restart, as does the port.
			if err := s.RegisterAccount(ctx, "dave", "dave-secret"); err != nil {
				t.Fatalf("RegisterAccount: %v", err)
			}
			if err := s.RegisterAccount(ctx, "dave", ""); err == nil {
				t.Error("registering an existing account succeeded")
			}
			if _, err := login(ctx, t, s, "dave", "dave-secret"); err != nil {
				t.Fatalf("login dave: %v", err)
			}
			addr, oldPID := s.Addr(), s.PID()
			if err := s.Restart(ctx); err != nil {
				t.Fatalf("Restart: %v", err)
			}
			if s.Addr() != addr || s.PID() == oldPID {
				t.Errorf("after Restart: addr %s (was %s), pid %d (was %d)", s.Addr(), addr, s.PID(), oldPID)
			}
			if processAlive(oldPID) {
				t.Errorf("old pid %d still alive", oldPID)
			}
			for _, local := range []string{"alice", "dave"} {
				if _, err := login(ctx, t, s, local, s.Password(local)); err != nil {
					t.Fatalf("login %s after restart: %v", local, err)
				}
			}

			dir, pid, group := s.Dir(), s.PID(), s.proc.reaper.pgid()
			if err := s.Stop(); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if err := s.Stop(); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dir %s still there: %v", dir, err)
			}
			if processAlive(pid) {
				t.Errorf("pid %d still alive", pid)
			}
			groupGone(t, group)
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				t.Errorf("%s still accepts after Stop", addr)
			}
		})
	}
}

// TestParallelInstances runs two instances of each server at once, MAM off.
func TestParallelInstances(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	for _, kind := range Kinds() {
		for i := range 2 {
			t.Run(string(kind)+"/"+string(rune('a'+i)), func(t *testing.T) {
				t.Parallel()
				s := Start(t, kind, Options{Accounts: []string{"u"}, NoMAM: true})
				if s.MAM() {
					t.Error("MAM() = true with NoMAM")
				}
				mu.Lock()
				if seen[s.Addr()] {
					t.Errorf("address %s handed out twice", s.Addr())
				}
				seen[s.Addr()] = true
				mu.Unlock()
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				if _, err := login(ctx, t, s, "u", s.Password("u")); err != nil {
					t.Fatalf("login: %v", err)
				}
			})
		}
	}
}

func TestUnknownKind(t *testing.T) {
	if _, err := Launch(t.Context(), Kind("openfire"), Options{}); err == nil {
		t.Fatal("Launch of an unknown kind succeeded")
	}
	if err := Available(Kind("openfire")); err == nil {
		t.Fatal("Available of an unknown kind is nil")
	}
}

func TestInvalidAccount(t *testing.T) {
	if Available(Prosody) != nil {
		t.Skip("prosody not available")
	}
	if _, err := Launch(t.Context(), Prosody, Options{Accounts: []string{"a@b"}}); err == nil {
		t.Fatal("Launch with an invalid localpart succeeded")
	}
}

func TestProsodyEncode(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"localhost", "localhost"},
		{"conference.localhost", "conference%2elocalhost"},
		{"a-b_c", "a%2db%5fc"},
	} {
		if got := prosodyEncode(tc.in); got != tc.want {
			t.Errorf("prosodyEncode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestTail(t *testing.T) {
	tl := &tail{max: 4}
	tl.Write([]byte("ab"))
	tl.Write([]byte("cdef"))
	if got := string(tl.bytes()); got != "cdef" {
		t.Fatalf("tail = %q", got)
	}
}

// fakeTB records Skip and Fatal instead of acting on them.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Skipf(format string, a ...any)  { f.skipped = true; runtime.Goexit() }
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = true; runtime.Goexit() }

// TestStartUnavailable: a missing server skips locally and fails under CI.
func TestStartUnavailable(t *testing.T) {
	for _, ci := range []string{"", "true"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			f := &fakeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(f, Kind("no-such-server"), Options{})
			}()
			<-done
			if f.skipped != (ci == "") || f.failed != (ci == "true") {
				t.Errorf("skipped %v, failed %v", f.skipped, f.failed)
			}
		})
	}
}

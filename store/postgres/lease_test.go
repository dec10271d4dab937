package postgres

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// stallProxy forwards TCP connections to the database. stall freezes the
// connections open at that moment (no byte passes either way, no socket
// is closed), as a network path that stops passing packets does: the
// server does not notice, and its backend keeps its locks. With refuse
// set, new connections are closed at once.
type stallProxy struct {
	l      net.Listener
	mu     sync.Mutex
	live   []chan struct{} // closed to freeze a connection
	refuse bool
}

// proxied returns the DSN of database name through a new stallProxy.
func proxied(t *testing.T, name string) (string, *stallProxy) {
	u, err := url.Parse(database(t, name))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l}
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		l.Close()
		wg.Wait()
	})
	target := u.Host
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			refuse := p.refuse
			freeze := make(chan struct{})
			if !refuse {
				p.live = append(p.live, freeze)
			}
			p.mu.Unlock()
			up, err := net.Dial("tcp", target)
			if refuse || err != nil {
				c.Close()
				continue
			}
			pipe := func(dst, src net.Conn) {
				defer dst.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					select {
					case <-freeze:
						<-done // frozen until the test ends
						return
					default:
					}
					if n > 0 {
						dst.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}
			wg.Go(func() { pipe(up, c) })
			wg.Go(func() { pipe(c, up) })
		}
	})
	u.Host = l.Addr().String()
	return u.String(), p
}

// stall freezes the connections open now; with refuse, new ones are
// refused from now on.
func (p *stallProxy) stall(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.live {
		close(f)
	}
	p.live, p.refuse = nil, refuse
}

// waitTakenAgain waits until no lease of s is being taken again.
func waitTakenAgain(t *testing.T, s *Store) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); s.suspended.Load() > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lease was not taken again")
		}
	}
}

// TestLeaseStalledTakenAgain: the lease's connection stalls (the server
// does not notice; its backend keeps the lock) and nobody else asks for
// the lease: once the ping times out, the lease is taken again (the old
// backend, told by its process id and start time, terminated), not lost.
func TestLeaseStalledTakenAgain(t *testing.T) {
	ctx := context.Background()
	dsn, p := proxied(t, "leasestall")
	s, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Lock(ctx, msg("").Owner)
	if err != nil {
		t.Fatal(err)
	}
	p.stall(false)
	for deadline := time.Now().Add(30 * time.Second); s.suspended.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stalled lease was not noticed")
		}
	}
	waitTakenAgain(t, s)
	select {
	case <-l.Lost():
		t.Fatal("Lost closed, though nobody else asked for the lease")
	default:
	}
	other, err := Open(ctx, database(t, "leasestall"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Lock(ctx, msg("").Owner); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("another holder after the lease was taken again: %v, want ErrLocked", err)
	}
}

// TestLeaseLostOutOfReach: a holder that cannot reach the database loses
// its lease after maxSuspended: meanwhile the server may drop its
// connection and let another instance in, which it could never learn of.
func TestLeaseLostOutOfReach(t *testing.T) {
	ctx := context.Background()
	dsn, p := proxied(t, "leasereach")
	s, err := OpenConfig(ctx, dsn, Config{maxSuspended: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Lock(ctx, msg("").Owner)
	if err != nil {
		t.Fatal(err)
	}
	p.stall(true)
	select {
	case <-l.Lost():
	case <-time.After(60 * time.Second):
		t.Fatal("a lease out of the database's reach was never lost")
	}
	if n := s.suspended.Load(); n != 0 {
		t.Errorf("%d leases still suspended once lost: commits refused for good", n)
	}
}

// TestReleaseLeavesOthersRow: Release deletes its own row of
// xmpptrack_owners only: once the lock is free, the next holder writes its
// own, which proves its ownership when its lease is taken again.
func TestReleaseLeavesOthersRow(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, database(t, "leaserow"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Lock(ctx, msg("").Owner)
	if err != nil {
		t.Fatal(err)
	}
	// As if the next holder had written its row already.
	o := msg("").Owner
	if _, err := s.pool.Exec(ctx, `UPDATE xmpptrack_owners SET holder = 'next', since = now() WHERE account = $1 AND resource = $2`,
		o.Account, o.Resource); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	var holder string
	if err := s.pool.QueryRow(ctx, `SELECT holder FROM xmpptrack_owners WHERE account = $1 AND resource = $2`,
		o.Account, o.Resource).Scan(&holder); err != nil || holder != "next" {
		t.Errorf("the next holder's row after Release: %q, %v", holder, err)
	}
}

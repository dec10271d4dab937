package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xmpptrack/xmpptrack/store"
)

// A lease is a session-level advisory lock held on a connection of its
// own. PostgreSQL releases it when that connection ends: Release, Close,
// the holder's process dying (the kernel closes its socket, the server
// notices at once), or, for a host that vanishes without closing its
// sockets, when TCP keepalives give up on it.
type lease struct {
	s     *Store
	owner store.Instance
	key   int64
	conn  *pgx.Conn
	lost  chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	err   error
}

// leaseCheck is how often a lease's connection is checked.
const leaseCheck = time.Second

func (l *lease) Owner() store.Instance { return l.owner }
func (l *lease) Lost() <-chan struct{} { return l.lost }

// Release implements store.Lease.
func (l *lease) Release() error {
	l.s.mu.Lock()
	if l.s.leases[l.owner] == l {
		delete(l.s.leases, l.owner)
	}
	l.s.mu.Unlock()
	return l.release()
}

// release unlocks (so that the next holder need not wait for the server to
// notice the closed connection) and closes the connection.
func (l *lease) release() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		select {
		case <-l.lost:
		default:
			if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
				l.err = fmt.Errorf("postgres: releasing the lease of %v: %w", l.owner, err)
			}
			l.conn.Exec(ctx, `DELETE FROM xmpptrack_owners WHERE account = $1 AND resource = $2`, l.owner.Account, l.owner.Resource)
		}
		l.conn.Close(ctx)
	})
	return l.err
}

// watch checks the connection; when it breaks, the lock is gone.
func (l *lease) watch() {
	defer close(l.done)
	t := time.NewTicker(leaseCheck)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			close(l.lost)
			if l.s.log != nil {
				l.s.log.Warn("postgres: lease lost", "owner", l.owner.String(), "err", err)
			}
			return
		}
	}
}

// leaseKey is the advisory lock key of an owner.
func leaseKey(owner store.Instance) int64 {
	h := fnv.New64a()
	h.Write([]byte("xmpptrack lease\x00"))
	h.Write([]byte(owner.Account))
	h.Write([]byte{0})
	h.Write([]byte(owner.Resource))
	return int64(h.Sum64())
}

// Lock implements store.Store.
func (s *Store) Lock(ctx context.Context, owner store.Instance) (store.Lease, error) {
	if err := owner.Validate(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, store.ErrClosed
	}
	if _, ok := s.leases[owner]; ok {
		s.mu.Unlock()
		return nil, &store.LockedError{Owner: owner, By: "another client of this store"}
	}
	s.mu.Unlock()

	conn, err := pgx.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: lease: %w", err)
	}
	key := leaseKey(owner)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: lease: %w", err)
	}
	if !ok {
		var holder string
		var since time.Time
		err := conn.QueryRow(ctx, `SELECT holder, since FROM xmpptrack_owners WHERE account = $1 AND resource = $2`,
			owner.Account, owner.Resource).Scan(&holder, &since)
		conn.Close(context.Background())
		if err == nil {
			return nil, &store.LockedError{Owner: owner, By: fmt.Sprintf("%s since %s", holder, since.Format(time.RFC3339))}
		}
		return nil, &store.LockedError{Owner: owner}
	}
	host, _ := os.Hostname()
	if _, err := conn.Exec(ctx, `INSERT INTO xmpptrack_owners (account, resource, holder, since) VALUES ($1, $2, $3, now())
		ON CONFLICT (account, resource) DO UPDATE SET holder = EXCLUDED.holder, since = EXCLUDED.since`,
		owner.Account, owner.Resource, fmt.Sprintf("%s pid %d", host, os.Getpid())); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: lease: %w", err)
	}
	l := &lease{s: s, owner: owner, key: key, conn: conn, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed || s.leases[owner] != nil {
		closed := s.closed
		s.mu.Unlock()
		go l.watch()
		l.release()
		if closed {
			return nil, store.ErrClosed
		}
		return nil, &store.LockedError{Owner: owner, By: "another client of this store"}
	}
	s.leases[owner] = l
	s.mu.Unlock()
	go l.watch()
	return l, nil
}

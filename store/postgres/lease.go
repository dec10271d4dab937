package postgres

import (
	"context"
	"errors"
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
//
// When that connection breaks while the holder lives (the database
// restarted, the connection was terminated or cut), the lock is gone on
// the server, but nobody else may have taken it: the lease is taken again
// on a new connection, and is lost (Lost closed) only when another holder
// has the lock, or had it meanwhile (its row in xmpptrack_owners is not
// this lease's any more). Until it is taken again, Commit fails on this
// Store (errLeaseSuspended), so that nothing is written as an owner that
// may not be one. The server may not have noticed yet that the broken
// connection is gone (a stalled network): its backend, still holding the
// lock, is told apart from another holder's by its process id and start
// time, and terminated. A lease that cannot be taken again within
// maxSuspended (the database out of reach) is lost too: meanwhile the
// server may drop the connection and let another instance in, and the
// holder must stop before that (see maxSuspended).
type lease struct {
	s       *Store
	owner   store.Instance
	key     int64
	holder  string    // this lease's row in xmpptrack_owners: holder,
	since   time.Time // and since
	conn    *pgx.Conn // the watcher's while it runs, then release's
	backend backend   // conn's server process
	lost    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	err     error
}

// backend is a server process: its id, and when it started (ids are
// reused).
type backend struct {
	pid   int32
	start time.Time
}

// backendOf returns conn's server process.
func backendOf(ctx context.Context, conn *pgx.Conn) (backend, error) {
	var b backend
	err := conn.QueryRow(ctx, `SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&b.pid, &b.start)
	return b, err
}

// leaseCheck is how often a lease's connection is checked.
const leaseCheck = time.Second

// takeover is how long Lock waits after taking a lock that its previous
// holder did not release (its row in xmpptrack_owners is still there: a
// process that died, or one whose lease connection broke), before it
// returns: a holder that lives learns of the loss within leaseCheck and a
// failed attempt to take the lease again, and stops writing (see lease),
// before the new holder starts.
const takeover = 3 * leaseCheck

// maxSuspended bounds how long a lease whose connection broke is being
// taken again before it counts as lost. Another instance gets the lock
// only once the server dropped the broken connection (at once when it is
// closed or terminated; for a host that vanished or a network cut, when
// TCP keepalives or tcp_user_timeout give up on it: two hours by default)
// and then waits takeover: a server set to drop dead connections in less
// than maxSuspended lets another instance in while this one may still run.
const maxSuspended = 30 * time.Second

// errLeaseSuspended: Commit while a lease of this Store is being taken
// again (see lease).
var errLeaseSuspended = errors.New("postgres: a lease's connection broke; commits fail until it is taken again")

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
			// The row first, and only ours: once unlocked, the next
			// holder may write its own.
			l.conn.Exec(ctx, `DELETE FROM xmpptrack_owners WHERE account = $1 AND resource = $2 AND holder = $3 AND since = $4`,
				l.owner.Account, l.owner.Resource, l.holder, l.since)
			if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key); err != nil {
				l.err = fmt.Errorf("postgres: releasing the lease of %v: %w", l.owner, err)
			}
		}
		l.conn.Close(ctx)
	})
	return l.err
}

// watch checks the connection; when it breaks, the lock is gone on the
// server, and watch takes it again or finds it lost (see lease).
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
		if err == nil {
			continue
		}
		if l.takeAgain(t.C, err) {
			return
		}
	}
}

// takeAgain takes the lock again after the lease's connection broke
// (cause), once per tick, and reports whether watching ends: the lease was
// lost, or released meanwhile. Commits of the Store fail until it returns;
// Lost is closed before they resume, so that the holder sees it first.
func (l *lease) takeAgain(tick <-chan time.Time, cause error) (end bool) {
	l.s.suspended.Add(1)
	defer l.s.suspended.Add(-1)
	l.warn("postgres: lease connection broke; taking the lease again", "err", cause)
	broke := time.Now()
	for {
		ok, lost := l.retake()
		switch {
		case ok:
			l.warn("postgres: lease taken again")
			return false
		case lost:
			close(l.lost)
			l.warn("postgres: lease lost: another holder has it or had it")
			return true
		case time.Since(broke) >= l.s.maxSuspendedFor():
			close(l.lost)
			l.warn("postgres: lease lost: not taken again in time", "wait", l.s.maxSuspendedFor())
			return true
		}
		select {
		case <-l.stop:
			return true
		case <-tick:
		}
	}
}

// retake takes the lock again on a new connection: ok if this lease holds
// it again, lost if another holder has it or had it meanwhile, neither if
// the database cannot tell now (try again).
func (l *lease) retake() (ok, lost bool) {
	if f := l.s.cfg.beforeRetake; f != nil {
		f()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.s.connCfg)
	if err != nil {
		return false, false
	}
	defer func() {
		if !ok {
			conn.Close(context.Background()) // unlocks, if it locked
		}
	}()
	var holder string
	var since time.Time
	err = conn.QueryRow(ctx, `SELECT holder, since FROM xmpptrack_owners WHERE account = $1 AND resource = $2`,
		l.owner.Account, l.owner.Resource).Scan(&holder, &since)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, true // another holder took it and released it
	case err != nil:
		return false, false
	case holder != l.holder || !since.Equal(l.since):
		return false, true
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, l.key).Scan(&got); err != nil {
		return false, false
	}
	if !got {
		// Held: by our old backend, which the server has not seen die
		// yet (terminated, it lets go), or by another holder, whose row
		// is not written until its takeover wait ended.
		var b backend
		err := conn.QueryRow(ctx, `SELECT a.pid, a.backend_start FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
			WHERE k.locktype = 'advisory' AND k.granted AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND k.classid = $1 AND k.objid = $2 AND k.objsubid = 1`,
			uint32(uint64(l.key)>>32), uint32(uint64(l.key))).Scan(&b.pid, &b.start)
		if err != nil {
			return false, false // released meanwhile, say: the next round tells
		}
		if b.pid != l.backend.pid || !b.start.Equal(l.backend.start) {
			return false, true
		}
		conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, b.pid)
		return false, false // the next round takes it
	}
	b, err := backendOf(ctx, conn)
	if err != nil {
		return false, false
	}
	l.conn.Close(context.Background())
	l.conn, l.backend = conn, b
	return true, false
}

func (l *lease) warn(msg string, args ...any) {
	if l.s.log != nil {
		l.s.log.Warn(msg, append([]any{"owner", l.owner.String()}, args...)...)
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
	var unreleased bool // a row left by a holder that did not release
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM xmpptrack_owners WHERE account = $1 AND resource = $2)`,
		owner.Account, owner.Resource).Scan(&unreleased); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: lease: %w", err)
	}
	if unreleased {
		// Holding the lock, with the previous holder's row left as it is:
		// a previous holder still running fails to take the lease again
		// and stops (see lease). A Lock given up meanwhile leaves the row,
		// and the next one waits again.
		t := time.NewTimer(s.takeoverWait())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			conn.Close(context.Background())
			return nil, fmt.Errorf("postgres: lease: waiting for the previous holder to stop: %w", ctx.Err())
		}
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s pid %d", host, os.Getpid())
	var since time.Time
	if err := conn.QueryRow(ctx, `INSERT INTO xmpptrack_owners (account, resource, holder, since) VALUES ($1, $2, $3, now())
		ON CONFLICT (account, resource) DO UPDATE SET holder = EXCLUDED.holder, since = EXCLUDED.since RETURNING since`,
		owner.Account, owner.Resource, holder).Scan(&since); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: lease: %w", err)
	}
	b, err := backendOf(ctx, conn)
	if err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: lease: %w", err)
	}
	l := &lease{s: s, owner: owner, key: key, holder: holder, since: since, conn: conn, backend: b,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
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

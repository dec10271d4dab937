package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// Config configures a store. The zero value is ready to use.
type Config struct {
	// NoSync lets a commit return before PostgreSQL flushed it to disk
	// (synchronous_commit = off): faster, and safe against our process
	// dying, but a crash of the database server can lose the last commits
	// (never corrupting anything). The default waits for the flush.
	NoSync bool
	// Retention is how long settled messages are kept: zero means
	// store.DefaultRetention, a negative value keeps them for ever.
	Retention time.Duration
	// MaxConns bounds the connections of the pool (default 8); leases and
	// the listener use connections of their own.
	MaxConns int32
	// Logger receives connection and pruning troubles; nil discards them.
	Logger *slog.Logger

	// beforeCommit, if set, runs after a group's cursors were taken and
	// before COMMIT (tests delay commits with it).
	beforeCommit func()
	// tune, if set, adjusts the pool's configuration (tests log the
	// plans of the store's statements with it).
	tune func(*pgxpool.Config)
	// listening, if set, is called each time the listener has executed
	// LISTEN.
	listening func()
	// pooled, if set, makes the store take its connections for a
	// pooler's (tests).
	pooled bool
	// takeover, if set, replaces the constant takeover (tests).
	takeover time.Duration
	// beforeRetake, if set, runs before each attempt to take a lease
	// again (tests hold the attempt).
	beforeRetake func()
	// maxSuspended, if set, replaces the constant maxSuspended (tests).
	maxSuspended time.Duration
	// try, if set, replaces tryGroup (tests).
	try func(group []*groupcommit.Request, live []int) ([]result, map[string]bool, error)
	// claimRead, if set, returns the statement that reads a group's keys
	// after its insert (tests make it fail).
	claimRead func() string
	// claimTimeout, if set, replaces the package's claimTimeout (tests).
	claimTimeout time.Duration
}

// Store is a store.Store on PostgreSQL.
type Store struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	connCfg *pgx.ConnConfig // for the listener and leases

	group  *groupcommit.Queue // to the committer
	claims *groupcommit.Queue // to the claimer (see ClaimKey)
	args   args               // the committer's arguments, reused (see tryGroup)
	seen   map[string]int     // the committer's, reused (see commitGroup)
	pooled *atomic.Bool       // the session ids are not the server's (a connection pooler)

	ctx  context.Context // ends with Close
	stop context.CancelFunc

	mu        sync.Mutex
	closed    bool
	notify    chan struct{} // closed and replaced when the feed moves
	listening bool          // the listener was started (by the first read of the feed)
	heard     bool          // the listener listens now
	leases    map[store.Instance]*lease
	workers   sync.WaitGroup

	suspended atomic.Int32 // leases being taken again: Commit fails (see lease)
}

var _ store.Store = (*Store)(nil)

// Open connects to the database of dsn (a URL or key=value string, as
// libpq takes), creates or upgrades the schema, checks the privileges, and
// returns the store.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenConfig(ctx, dsn, Config{})
}

// OpenConfig is Open with a Config.
func OpenConfig(ctx context.Context, dsn string, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 8
	}
	pcfg.MaxConns = cfg.MaxConns
	if cfg.NoSync {
		pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "xmpptrack"
	if cfg.tune != nil {
		cfg.tune(pcfg)
	}
	// A connection pooler (PgBouncer, ...) hands its clients a session id
	// of its own: the server's differs. A commit in doubt cannot then be
	// told apart from one that did not happen (see settle).
	pooled := new(atomic.Bool)
	if cfg.pooled {
		pooled.Store(true)
	}
	after := pcfg.AfterConnect
	pcfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, c); err != nil {
				return err
			}
		}
		var pid uint32
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		if pid != c.PgConn().PID() {
			pooled.Store(true)
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connecting: %w", err)
	}
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger,
		pool:    pool,
		connCfg: pcfg.ConnConfig.Copy(),
		pooled:  pooled,
		notify:  make(chan struct{}),
		leases:  map[store.Instance]*lease{},
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.group = groupcommit.New(s.ctx)
	// A transaction costs the server a fixed 0.2-0.3 ms of CPU (the call's
	// set-up, the commit and its flush): concurrent senders share one per
	// round instead of two (see Durability in the package documentation).
	s.group.Refill()
	if err := s.migrate(ctx); err != nil {
		s.stop()
		pool.Close()
		return nil, err
	}
	s.workers.Go(func() { s.group.Run(s.commitGroup) })
	s.claims = groupcommit.New(s.ctx)
	s.claims.Inline(s.claimGroup)
	s.workers.Go(func() { s.claims.Run(s.claimGroup) })
	if cfg.Retention >= 0 {
		s.workers.Go(s.pruner)
	}
	return s, nil
}

// Close stops the committer, the listener and the pruner, releases every
// lease and closes the pool. Commits already taken are written first.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	leases := s.leases
	s.leases = nil
	s.mu.Unlock()
	var errs []error
	for _, l := range leases {
		errs = append(errs, l.release())
	}
	s.stop()
	s.workers.Wait()
	s.claims.Stop() // a ClaimKey claiming on its own goroutine
	s.pool.Close()
	return errors.Join(errs...)
}

// takeoverWait is takeover, or Config.takeover in tests.
func (s *Store) takeoverWait() time.Duration {
	if s.cfg.takeover > 0 {
		return s.cfg.takeover
	}
	return takeover
}

// maxSuspendedFor is maxSuspended, or Config.maxSuspended in tests.
func (s *Store) maxSuspendedFor() time.Duration {
	if s.cfg.maxSuspended > 0 {
		return s.cfg.maxSuspended
	}
	return maxSuspended
}

func (s *Store) isClosed() bool { return s.ctx.Err() != nil }

// wake wakes this Store's waiters.
func (s *Store) wake() {
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

// channel is the NOTIFY channel of the feed.
const channel = "xmpptrack_feed"

// startListener starts the listener unless it runs. A Store listens only
// once it reads the feed (Wait, Changes, LastCursor): a listening session
// costs the server a transaction at each notification, which a Store that
// only writes (a client's) would pay for nothing. Waiters need not wait
// for it: it wakes them once it listens, and they look again.
func (s *Store) startListener() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listening && !s.closed {
		s.listening = true
		s.workers.Go(s.listen)
	}
}

// listen keeps a connection that LISTENs on the feed's channel and wakes
// waiters at each notification; it reconnects with backoff when the
// connection breaks, and wakes everybody then (they look again). A failure
// to connect or to LISTEN is logged, not returned: waiters poll meanwhile
// (see pollEvery), and it tries again.
func (s *Store) listen() {
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		conn, err := s.listenConn()
		if err != nil {
			s.logf("postgres: listener: %v", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if s.cfg.listening != nil {
			s.cfg.listening()
		}
		s.hear(true)
		s.wake() // anything committed while we were not listening
		for {
			_, err := conn.WaitForNotification(s.ctx)
			if err != nil {
				break
			}
			s.wake()
		}
		s.hear(false)
		conn.Close(context.Background())
		s.wake() // they poll until it listens again
	}
}

// hear notes whether the listener listens.
func (s *Store) hear(on bool) {
	s.mu.Lock()
	s.heard = on
	s.mu.Unlock()
}

// pollEvery is how often Wait looks at the feed while the listener does
// not listen (it has not yet, or it cannot connect or LISTEN, or its
// connection broke): commits of other instances then reach waiters within
// that time, those of this Store at once.
const pollEvery = time.Second

func (s *Store) listenConn() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.connCfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("postgres: listener: %w", err)
	}
	return conn, nil
}

func (s *Store) logf(format string, args ...any) {
	if s.log != nil && s.ctx.Err() == nil {
		s.log.Warn(fmt.Sprintf(format, args...))
	}
}

// pruner prunes at start and then hourly.
func (s *Store) pruner() {
	ret := s.cfg.Retention
	if ret == 0 {
		ret = store.DefaultRetention
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
		_, err := s.Prune(ctx, time.Now().Add(-ret))
		cancel()
		if err != nil {
			s.logf("postgres: pruning failed: %v", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// transient reports an error of a broken connection: the server restarted
// or went away. The statement did not complete; the pool may hold more
// connections broken the same way.
func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "08")
	}
	return pgconn.SafeToRetry(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// read runs a read, and runs it once more on fresh connections if it
// failed on a broken one (the database restarted since the pool last used
// its connections).
func (s *Store) read(ctx context.Context, f func() error) error {
	err := f()
	if err != nil && transient(err) && ctx.Err() == nil && !s.isClosed() {
		s.pool.Reset()
		err = f()
	}
	return err
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // also the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// Config configures a store. The zero value is ready to use.
type Config struct {
	// Sync makes every commit survive power loss (synchronous=FULL),
	// instead of surviving the process being killed (the default).
	Sync bool
	// Retention is how long settled messages are kept: zero means
	// store.DefaultRetention, a negative value keeps them for ever.
	Retention time.Duration
	// Logger receives pruning failures; nil discards them.
	Logger *slog.Logger
	// Shared lets other processes open the file while this store has it
	// open (a follower in another process, another account's client, a
	// command-line look at the file). Without it the store takes the file
	// for this process alone (see "One process" in the package
	// documentation), which spares SQLite's file locks on every
	// transaction.
	Shared bool

	// pragmas are extra connection pragmas for the writer (tests).
	pragmas []string
	// checkpointed, if set, gets the outcome of each background checkpoint
	// (tests): its mode, the WAL's frames and how many of them are in the
	// database file.
	checkpointed func(mode string, log, done int)
	// checkpointPages, if positive, replaces the checkpoint threshold
	// checkpointPages (tests).
	checkpointPages int
	// failRollback makes the committer's ROLLBACKs fail, the transaction
	// left open (tests).
	failRollback bool
	// failApply, if set, fails the writing of a batch when it returns an
	// error (tests).
	failApply func(*store.Batch) error
	// failClaim, if set, fails the claim of a key when it returns an
	// error, after the claim wrote it (tests).
	failClaim func(store.Key) error
	// listLag, if positive, replaces the lag of listing listLag (tests).
	listLag int64
	// checkingSchema, if set, runs right before Open checks that the
	// file's schema fits this version's statements (tests).
	checkingSchema func()
	// noPairs makes the writer write its WAL frames as SQLite does, two
	// writes each (tests, benchmarks; see walpair.go).
	noPairs bool
}

// Store is a store.Store on an SQLite file.
type Store struct {
	path string
	cfg  Config
	log  *slog.Logger
	w    *sql.DB // the writer: one connection
	r    *sql.DB // readers
	ck   *sql.DB // the checkpointer's connection (see checkpoint.go)

	group  *groupcommit.Queue // to the committer
	ckWake chan struct{}      // capacity 1: the WAL passed the threshold (see wrote)
	// walPages counts the pages written to the WAL since the last
	// checkpoint (see wrote).
	walPages atomic.Int64
	// written counts the pages the committer's committed transactions
	// wrote to the WAL since Open (the benchmarks report them per message,
	// see stats).
	written atomic.Int64
	// txs and items count the committer's transactions committed since
	// Open and the batches and claims they committed (see stats).
	txs, items atomic.Int64
	// cursorReads counts the committer's reads of the highest cursor
	// from the tables (see wconn.lastCursor; tests).
	cursorReads atomic.Int64
	states      states // the committer's cache of message states
	// unlisted counts the messages the committer wrote ahead since its
	// last sweep (see listing); only the committer uses it.
	unlisted int

	ctx  context.Context // ends with Close
	stop context.CancelFunc
	// release lets go of this store's part of the process's lock on the
	// file (see processLock).
	release func()
	// lockPath is the path-lock that holds the ownership locks (see
	// processLock).
	lockPath string

	mu      sync.Mutex
	closed  bool
	notify  chan struct{} // closed and replaced at each commit
	leases  map[store.Instance]*lease
	workers sync.WaitGroup
}

var _ store.Store = (*Store)(nil)

// Open opens (creating it if needed) the store at path, with the default
// Config.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenConfig(ctx, path, Config{})
}

// OpenConfig opens the store at path with cfg.
func OpenConfig(ctx context.Context, path string, cfg Config) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid path %q", path)
	}
	// An absolute path: the readers, the checkpointer and the ownership
	// locks open their files later, and a relative one would name another
	// file after the process changed its working directory.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	path = abs
	// The file for this process alone, where the system offers the lock
	// that keeps other processes out (see "One process" in doc.go).
	shared := cfg.Shared || exclusiveVFS == ""
	// path-lock is never removed: another process may hold locks on it.
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// Nor is the database file, even an empty one this Open created: by
	// the time Open fails, another Open (of this process or another) may
	// hold it, and an empty file is a valid new database.
	release, lockPath, err := processLock(path, shared)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, path, cfg, shared)
	if err != nil {
		release()
		return nil, err
	}
	s.release = release
	s.lockPath = lockPath
	return s, nil
}

// open opens the store at path once this process holds its lock.
func open(ctx context.Context, path string, cfg Config, shared bool) (*Store, error) {
	syncMode := "NORMAL"
	if cfg.Sync {
		syncMode = "FULL"
	}
	// vfs names SQLite's file system layer: "unix-excl" holds one lock on
	// the file for the process instead of taking and releasing locks for
	// each transaction (see "One process" in doc.go).
	base, vfs := "", ""
	if !shared {
		base, vfs = exclusiveVFS, "&vfs="+exclusiveVFS
	}
	params := "?_busy_timeout=10000&_txlock=immediate&_synchronous=" + syncMode + "&_pragma=wal_autocheckpoint(0)"
	for _, p := range cfg.pragmas {
		params += "&_pragma=" + p
	}
	probe, err := claim(ctx, path, vfs, shared)
	if err != nil {
		return nil, err
	}
	defer probe.Close()
	// The writer's WAL frames go to the file with one write each (see
	// walpair.go); the other connections never append to the WAL.
	wvfs := vfs
	if !cfg.noPairs {
		v, err := pairsOver(base)
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		wvfs = "&vfs=" + v.name
	}
	w, err := openWriter(path + params + wvfs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{
		path:   path,
		cfg:    cfg,
		log:    cfg.Logger,
		w:      w,
		notify: make(chan struct{}),
		leases: map[store.Instance]*lease{},
		ckWake: make(chan struct{}, 1),
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.group = groupcommit.New(s.ctx)
	s.group.Inline(s.commitGroup)
	if err := s.migrate(ctx); err != nil {
		s.stop()
		w.Close()
		return nil, err
	}
	// Copy a WAL left behind into the file now (see checkpoint.go).
	if _, err := w.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
		s.stop()
		w.Close()
		return nil, openErr(path, err)
	}
	if err := s.prepare(ctx); err != nil {
		s.stop()
		w.Close()
		return nil, openErr(path, err)
	}
	r, err := sql.Open("sqlite", path+"?_busy_timeout=10000&_query_only=1"+vfs)
	if err != nil {
		s.stop()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s.r = r
	ck, err := sql.Open("sqlite", path+"?_busy_timeout=10000&_synchronous="+syncMode+vfs)
	if err != nil {
		s.stop()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	s.ck = ck
	s.workers.Go(func() { s.group.Run(s.commitGroup) })
	s.workers.Go(func() { s.checkpointer(ck) })
	if cfg.Retention >= 0 {
		s.workers.Go(s.pruner)
	}
	return s, nil
}

// prepare prepares the committer's statements on the writer's connection
// (see wconn.go), so that a file they do not fit fails at Open.
func (s *Store) prepare(ctx context.Context) error {
	return s.onWriter(ctx, func(*wconn) error { return nil })
}

// claimWait bounds Open's wait for the file's lock: longer than another
// Store of this process holds it exclusively (rare: recovering a WAL), far
// shorter than the busy timeout another process's hold would exhaust.
const claimWait = 200 * time.Millisecond

// claim takes the file's lock for this process (with vfs "unix-excl"; a
// shared one with the default vfs) on a connection of its own, with a
// short busy timeout, so that a file another process holds fails Open at
// once with store.ErrLocked, instead of the writer's first statement
// failing with SQLITE_BUSY after the busy timeout. The caller closes the
// connection once the writer holds the lock too (a store's connections
// share the process's lock).
func claim(ctx context.Context, path, vfs string, shared bool) (*sql.DB, error) {
	wait := claimWait
	if shared {
		// A process holding the file for itself is refused by
		// processLock already; what is left is SQLite's own waits (a
		// WAL another process recovers, another program's write).
		wait = 10 * time.Second
	}
	db, err := sql.Open("sqlite", fmt.Sprintf("%s?_busy_timeout=%d%s", path, wait.Milliseconds(), vfs))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	var id int
	err = db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&id)
	var se *sqlite.Error
	switch {
	case errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY && shared:
		err = fmt.Errorf("sqlite: %s is busy or held by another program: %w", path, store.ErrLocked)
	case errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY:
		err = fmt.Errorf("sqlite: %s is busy or open in another program (a store takes its file for one process unless Config.Shared): %w", path, store.ErrLocked)
	case err != nil:
		err = openErr(path, err)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close stops the committer and the pruner, releases every lease and closes
// the database. Commits already queued are written first.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.stop()
	leases := s.leases
	s.leases = nil
	s.mu.Unlock()
	for _, l := range leases {
		l.release()
	}
	s.group.Stop() // a Commit committing on its own goroutine (see Commit)
	s.workers.Wait()
	rerr := errors.Join(s.r.Close(), s.ck.Close())
	// Fold the WAL into the database file, so that the file alone holds
	// everything (best effort: another process may be reading, and its
	// readers are waited for at most restartBusy, not the busy timeout; a
	// WAL left behind is folded by the next Open).
	s.w.Exec(fmt.Sprintf("PRAGMA busy_timeout = %d", restartBusy.Milliseconds()))
	s.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	err := errors.Join(rerr, s.w.Close())
	s.release() // the process's lock, once SQLite's connections are closed
	if err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// isClosed reports whether Close was called.
func (s *Store) isClosed() bool {
	return s.ctx.Err() != nil
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
		if err != nil && s.log != nil && !s.isClosed() {
			s.log.Warn("sqlite: pruning failed", "err", err)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// micros encodes a time; the zero time is 0.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicros decodes micros.
func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

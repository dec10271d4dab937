package sqlitefloor

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/internal/storestats"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
)

// Config configures Open. The zero value is ready to use.
type Config struct {
	// Sync makes every commit survive power loss (synchronous=FULL), for
	// both files, as sqlite.Config.Sync.
	Sync bool
	// Discard makes Commit write nothing and return at once, without the
	// group commit: what the client's durable path costs by itself, with
	// no database work at all (the sender xmpptrack-store-discard).
	Discard bool
}

// Store is the instrument: the real store for everything but Commit.
type Store struct {
	*sqlite.Store // the real store: Lock, Session, Pending, the reads

	db    *sql.DB
	conn  *sql.Conn // the writer's one connection, held until Close
	group *groupcommit.Queue
	stop  context.CancelFunc
	done  sync.WaitGroup
	// discard: see Config.Discard.
	discard bool

	// Owned by the commit function (one run at a time, see groupcommit).
	st   [nStmts]driver.Stmt
	args []driver.NamedValue

	txs, items, pages atomic.Int64 // see Stats
}

// schema is the floor's tables: nothing but their primary keys.
const schema = `
CREATE TABLE IF NOT EXISTS msgs (id TEXT PRIMARY KEY, raw BLOB);
CREATE TABLE IF NOT EXISTS changes (cursor INTEGER PRIMARY KEY, id TEXT NOT NULL, state INTEGER NOT NULL, at INTEGER NOT NULL, evidence TEXT);
CREATE TABLE IF NOT EXISTS seqs (n INTEGER PRIMARY KEY, id TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (account TEXT NOT NULL, resource TEXT NOT NULL, jid TEXT, smid TEXT, location TEXT,
	max INTEGER, inbound INTEGER, outbound INTEGER, acked INTEGER, updated INTEGER, PRIMARY KEY (account, resource)) WITHOUT ROWID;`

// Open opens the real store at path and the floor's file at path+"-floor".
func Open(ctx context.Context, path string, cfg Config) (*Store, error) {
	rs, err := sqlite.OpenConfig(ctx, path, sqlite.Config{Sync: cfg.Sync})
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, path+"-floor", cfg)
	if err != nil {
		rs.Close()
		return nil, err
	}
	s.Store = rs
	s.discard = cfg.Discard
	return s, nil
}

// open opens the floor's own file.
func open(ctx context.Context, path string, cfg Config) (*Store, error) {
	syncMode := "NORMAL"
	if cfg.Sync {
		syncMode = "FULL"
	}
	dsn := path + "?_busy_timeout=10000&_txlock=immediate&_synchronous=" + syncMode + "&_pragma=journal_mode(WAL)"
	if runtime.GOOS == "linux" {
		dsn += "&vfs=unix-excl" // as the real store's (see its "One process")
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitefloor: %s: %w", path, err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{db: db, conn: conn}
	if err := s.prepare(ctx); err != nil {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("sqlitefloor: %s: %w", path, err)
	}
	life, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.group = groupcommit.New(life)
	s.group.Inline(s.commitGroup)
	s.done.Go(func() { s.group.Run(s.commitGroup) })
	return s, nil
}

// prepare prepares the statements on the writer's connection.
func (s *Store) prepare(ctx context.Context) error {
	return s.conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("the driver's connection %T cannot prepare", dc)
		}
		for i, q := range stmtSQL {
			st, err := pc.PrepareContext(ctx, q)
			if err != nil {
				s.closeStmts()
				return err
			}
			s.st[i] = st
		}
		return nil
	})
}

func (s *Store) closeStmts() {
	for i, st := range s.st {
		if st != nil {
			st.Close()
			s.st[i] = nil
		}
	}
}

// Commit implements store.Store: the floor's write (see the package
// documentation), through the group commit.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if s.discard {
		s.items.Add(1)
		return nil
	}
	return s.group.Commit(ctx, b)
}

// Close stops the committer, closes the floor's file and then the real
// store.
func (s *Store) Close() error {
	s.stop()
	s.group.Stop()
	s.done.Wait()
	s.conn.Raw(func(any) error { s.closeStmts(); return nil })
	err := errors.Join(s.conn.Close(), s.db.Close())
	return errors.Join(err, s.Store.Close())
}

// Stats returns the floor's counters since Open, as storestats counts
// the real store's: transactions committed, the batches they committed,
// the pages they wrote to the WAL.
func (s *Store) Stats() storestats.Stats {
	return storestats.Stats{Transactions: s.txs.Load(), Requests: s.items.Load(), WALPages: s.pages.Load()}
}

// isDuplicate reports a primary key's constraint failing: a message id
// that exists.
func isDuplicate(err error) bool {
	var se *msqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

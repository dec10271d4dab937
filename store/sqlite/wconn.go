package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	msqlite "modernc.org/sqlite"
)

// The committer runs each transaction on the writer's driver connection
// (database/sql's Conn.Raw) with statements prepared once on it: BEGIN
// IMMEDIATE and COMMIT too, which database/sql's Tx would parse again for
// every transaction, and without database/sql's work around every
// statement (taking the connection, converting the arguments, binding the
// statement to the transaction). A lone sender pays a transaction per
// message, so this is paid per message.
//
// The statements belong to the connection (wconn, which the writer's
// connector makes): database/sql may close the connection and open
// another at any time (after a statement a caller's context interrupted,
// a driver.ErrBadConn, ...), and the connection closes its statements
// first, so that SQLite really closes it (an SQLite connection closed with
// statements still prepared stays open, files and memory, until they are
// finalized). The next transaction prepares them on the new one.

// Statements of the committer's transactions besides those of stmtSQL.
const (
	begin = nStmts + iota
	commit
	rollback
	getKey // a claim's (see claim.go)
	putKey
	nConnStmts
)

var connSQL = [nConnStmts]string{begin: "BEGIN IMMEDIATE", commit: "COMMIT", rollback: "ROLLBACK",
	getKey: sqlGetKey, putKey: sqlPutKey}

func init() {
	copy(connSQL[:nStmts], stmtSQL[:])
}

// openWriter opens the writer's database: its connections are wconns.
func openWriter(dsn string) (*sql.DB, error) {
	c, err := msqlite.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(writerConnector{c}), nil
}

// writerConnector makes the writer's connections.
type writerConnector struct{ driver.Connector }

func (c writerConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := dc.(driverConn); !ok {
		dc.Close()
		return nil, fmt.Errorf("sqlite: the driver's connection %T lacks interfaces the store uses", dc)
	}
	return &wconn{Conn: dc}, nil
}

// A wconn passes on every interface of driverConn.
var _ driverConn = (*wconn)(nil)

// The driver's interfaces that database/sql and the store use; a wconn
// passes them on to the driver's connection, which has them all.
type driverConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	msqlite.DBStatus
	msqlite.FileControl // the data version (see lastCursor)
}

// wconn is a writer's driver connection with the committer's statements,
// prepared on first use (stmts) and closed with it. database/sql hands it
// to one user at a time (Conn.Raw for the committer), which orders its
// uses.
type wconn struct {
	driver.Conn
	st   [nConnStmts]driver.Stmt // all nil or all prepared
	args []driver.NamedValue     // reused by each statement
	row  []driver.Value          // reused by each query
	// last is the highest cursor as this connection's last transaction
	// of the committer left it, valid while the file's data version is
	// still version (see lastCursor).
	last    int64
	version uint32
	valid   bool
}

func (c *wconn) conn() driverConn { return c.Conn.(driverConn) }

// Unwrap returns the driver's connection.
func (c *wconn) Unwrap() driver.Conn { return c.Conn }

func (c *wconn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.conn().PrepareContext(ctx, q)
}

func (c *wconn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.conn().BeginTx(ctx, opts)
}

func (c *wconn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.conn().ExecContext(ctx, q, args)
}

func (c *wconn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.conn().QueryContext(ctx, q, args)
}

func (c *wconn) Ping(ctx context.Context) error { return c.conn().Ping(ctx) }

func (c *wconn) ResetSession(ctx context.Context) error { return c.conn().ResetSession(ctx) }

func (c *wconn) IsValid() bool { return c.conn().IsValid() }

// Status implements msqlite.DBStatus.
func (c *wconn) Status(op msqlite.DBStatusOp, reset bool) (int, int, error) {
	return c.conn().Status(op, reset)
}

// FileControlPersistWAL implements msqlite.FileControl.
func (c *wconn) FileControlPersistWAL(db string, mode int) (int, error) {
	return c.conn().FileControlPersistWAL(db, mode)
}

// FileControlDataVersion implements msqlite.FileControl.
func (c *wconn) FileControlDataVersion(db string) (uint32, error) {
	return c.conn().FileControlDataVersion(db)
}

// Close closes the committer's statements, then the driver's connection.
func (c *wconn) Close() error {
	c.closeStmts()
	return c.Conn.Close()
}

// stmts prepares the committer's statements if they are not yet.
func (c *wconn) stmts() error {
	if c.st[0] != nil {
		return nil
	}
	for i, q := range connSQL {
		st, err := c.conn().PrepareContext(context.Background(), q)
		if err != nil {
			c.closeStmts()
			return err
		}
		c.st[i] = st
	}
	return nil
}

func (c *wconn) closeStmts() {
	for i, st := range c.st {
		if st != nil {
			st.Close()
			c.st[i] = nil
		}
	}
}

// onWriter runs f on the writer's driver connection, its statements
// prepared.
func (s *Store) onWriter(ctx context.Context, f func(c *wconn) error) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*wconn)
		if !ok {
			return fmt.Errorf("sqlite: the writer's connection is a %T", dc)
		}
		if err := c.stmts(); err != nil {
			return err
		}
		return f(c)
	})
}

// bind fills c.args with args.
func (c *wconn) bind(args []any) []driver.NamedValue {
	c.args = c.args[:0]
	for i, a := range args {
		c.args = append(c.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	return c.args
}

// exec runs statement i. Its arguments must be driver values (int64, not
// int).
func (c *wconn) exec(i int, args ...any) (driver.Result, error) {
	// Never a cancellable context: the driver would start a goroutine per
	// statement to watch it (waits for locks are bounded by the busy
	// timeout anyway).
	return c.st[i].(driver.StmtExecContext).ExecContext(context.Background(), c.bind(args))
}

// queryRow runs query i and returns its first row (nil if it has none),
// valid until the next query.
func (c *wconn) queryRow(i int, args ...any) ([]driver.Value, error) {
	rows, err := c.st[i].(driver.StmtQueryContext).QueryContext(context.Background(), c.bind(args))
	if err != nil {
		return nil, err
	}
	if n := len(rows.Columns()); cap(c.row) < n {
		c.row = make([]driver.Value, n)
	} else {
		c.row = c.row[:n]
	}
	err = rows.Next(c.row)
	cerr := rows.Close()
	if errors.Is(err, io.EOF) {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return c.row, cerr
}

// lastCursor returns the highest cursor as the committer's last
// transaction on c committed it, if nothing else changed the file since:
// c's transaction must be open, so that SQLite has read the file's state.
// The file's data version (SQLite's SQLITE_FCNTL_DATA_VERSION) changes at
// every commit of this connection and whenever a transaction of it finds
// that another connection (of this process or another) committed; then
// ok is false and the cursor must be read from the tables. It spares every
// write-ahead the two subqueries of sqlLastCursor.
func (c *wconn) lastCursor() (last int64, ok bool) {
	if !c.valid {
		return 0, false
	}
	c.valid = false // until the transaction commits (see committed)
	v, err := c.dataVersion()
	if err != nil || v != c.version {
		return 0, false
	}
	return c.last, true
}

// committed notes the highest cursor of the transaction just committed
// on c, for the next one (see lastCursor).
func (c *wconn) committed(last int64) {
	v, err := c.dataVersion()
	c.last, c.version, c.valid = last, v, err == nil
}

// dataVersion returns the file's data version (see lastCursor).
func (c *wconn) dataVersion() (uint32, error) {
	return c.conn().FileControlDataVersion("main")
}

// walPages returns the pages the connection wrote since the last call.
func (c *wconn) walPages() int {
	n, _, _ := c.Status(msqlite.DBStatusCacheWrite, true)
	return n
}

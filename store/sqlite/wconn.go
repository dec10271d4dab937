package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	msqlite "modernc.org/sqlite"
)

// The committer runs each transaction on the writer's driver connection
// (database/sql's Conn.Raw) with statements it prepared once on that
// connection, BEGIN IMMEDIATE and COMMIT included: database/sql's Tx would
// parse those two again for every transaction, and adds its own work to
// every statement (taking the connection, converting the arguments,
// binding the statement to the transaction). A lone sender pays a
// transaction per message, so this is paid per message.
//
// The statements belong to one driver connection. database/sql replaces
// the writer's connection only when it is broken (a driver.ErrBadConn):
// the committer then prepares them again on the new one. The only code
// that breaks it on purpose (restart, in checkpoint.go) closes them first
// (dropStmts), as does Close.

// Statements of the committer's transactions besides those of stmtSQL.
const (
	begin = nStmts + iota
	commit
	rollback
	nConnStmts
)

var connSQL = [nConnStmts]string{begin: "BEGIN IMMEDIATE", commit: "COMMIT", rollback: "ROLLBACK"}

func init() {
	copy(connSQL[:nStmts], stmtSQL[:])
}

// wconn is the writer's driver connection with the committer's prepared
// statements. It is used only while the committer (or Close) holds the
// connection through Conn.Raw, which also orders its uses.
type wconn struct {
	dc   any // the driver connection they were prepared on
	st   [nConnStmts]driver.Stmt
	args []driver.NamedValue // reused by each statement
	row  []driver.Value      // reused by each query
}

// conn returns the prepared statements of driver connection dc, preparing
// them the first time and when database/sql replaced the connection.
func (s *Store) conn(dc any) (*wconn, error) {
	if s.wc != nil && s.wc.dc == dc {
		return s.wc, nil
	}
	// A replaced connection was closed by database/sql and its driver
	// state freed, so its statements cannot be closed any more: they are
	// forgotten (SQLite keeps the closed connection's memory for them, a
	// leak that only a connection broken by a failure causes).
	s.wc = nil
	pc, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("sqlite: the driver's connection %T cannot prepare statements", dc)
	}
	c := &wconn{dc: dc}
	for i, q := range connSQL {
		st, err := pc.PrepareContext(context.Background(), q)
		if err != nil {
			c.close()
			return nil, err
		}
		c.st[i] = st
	}
	s.wc = c
	return c, nil
}

// close closes the prepared statements.
func (c *wconn) close() {
	for i, st := range c.st {
		if st != nil {
			st.Close()
			c.st[i] = nil
		}
	}
}

// dropStmts closes the committer's statements on driver connection dc, the
// writer's, which the caller holds (Conn.Raw) and is about to close or
// break.
func (s *Store) dropStmts(dc any) {
	if s.wc != nil && s.wc.dc == dc {
		s.wc.close()
	}
	s.wc = nil
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

// walPages returns the pages the connection wrote since the last call.
func walPages(dc any) int {
	if st, ok := dc.(msqlite.DBStatus); ok {
		n, _, _ := st.Status(msqlite.DBStatusCacheWrite, true)
		return n
	}
	return 0
}

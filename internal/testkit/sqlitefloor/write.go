package sqlitefloor

import (
	"context"
	"database/sql/driver"
	"fmt"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// Statements, by index into st.
const (
	begin = iota
	commit
	rollback
	upSession
	// The multi-row inserts of each table, 64, 8 and 1 rows (see insert).
	msgs64
	msgs8
	msgs1
	changes64
	changes8
	changes1
	seqs64
	seqs8
	seqs1
	nStmts
)

// tables are the appending inserts: the first of three statements (64, 8
// and 1 rows), the columns they bind per row, and their SQL.
var tables = [...]struct {
	first, cols int
	sql         string
}{
	{msgs64, 2, `INSERT INTO msgs (id, raw) VALUES `},
	{changes64, 4, `INSERT INTO changes (id, state, at, evidence) VALUES `},
	{seqs64, 2, `INSERT INTO seqs (id, seq) VALUES `},
}

var stmtSQL = func() [nStmts]string {
	q := [nStmts]string{
		begin: "BEGIN IMMEDIATE", commit: "COMMIT", rollback: "ROLLBACK",
		upSession: `INSERT OR REPLACE INTO sessions
			(account, resource, jid, smid, location, max, inbound, outbound, acked, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	}
	for _, t := range tables {
		row := "(" + strings.TrimSuffix(strings.Repeat("?, ", t.cols), ", ") + ")"
		for k, rows := range [...]int{64, 8, 1} {
			q[t.first+k] = t.sql + strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
		}
	}
	return q
}()

// commitGroup writes the group in one transaction; if that fails, each
// batch again in a transaction of its own, so that a batch fails only for
// its own reasons (a duplicate id: store.ErrExists).
func (s *Store) commitGroup(group []*groupcommit.Request) {
	errs := make([]error, len(group))
	err := s.tx(group)
	for i, r := range group {
		switch {
		case err == nil:
		case len(group) == 1:
			errs[i] = err
		default:
			errs[i] = s.tx(group[i : i+1])
		}
		if errs[i] == nil {
			s.items.Add(1)
		}
		r.Answer(errs[i])
	}
}

// rows gathers the arguments of one table's rows.
type rows struct {
	args []any
	n    int
}

func (r *rows) add(v ...any) { r.args = append(r.args, v...); r.n++ }

// tx writes the batches of group in one transaction on the writer's
// connection.
func (s *Store) tx(group []*groupcommit.Request) error {
	now := time.Now()
	var m, c, q rows
	var changes []*store.Change
	var sessions []store.Session
	for _, r := range group {
		b := r.Batch
		if b == nil {
			return fmt.Errorf("sqlitefloor: claims go to the real store")
		}
		for i := range b.Messages {
			msg := &b.Messages[i]
			if msg.Created.IsZero() {
				msg.Created = now
			}
			msg.Cursor = 0 // none: see the package documentation
			m.add(msg.ID, msg.Raw)
		}
		for i := range b.Changes {
			ch := &b.Changes[i]
			if ch.At.IsZero() {
				ch.At = now
			}
			c.add(ch.ID, int64(ch.State), ch.At.UnixMicro(), evidence(ch.Evidence))
			changes = append(changes, ch)
		}
		for _, w := range b.Written {
			q.add(w.ID, int64(w.Seq))
		}
		sessions = append(sessions, b.Sessions...)
	}
	return s.conn.Raw(func(dc any) error {
		if _, err := s.exec(begin); err != nil {
			return err
		}
		err := s.write(&m, &c, &q, changes, sessions, now)
		if err == nil {
			_, err = s.exec(commit)
		}
		if err != nil {
			s.exec(rollback)
			for _, ch := range changes {
				ch.Cursor = 0
			}
			if isDuplicate(err) {
				return fmt.Errorf("sqlitefloor: %w", store.ErrExists)
			}
			return err
		}
		s.txs.Add(1)
		if st, ok := dc.(msqlite.DBStatus); ok {
			n, _, _ := st.Status(msqlite.DBStatusCacheWrite, true)
			s.pages.Add(int64(n))
		}
		return nil
	})
}

// write runs the statements of one transaction: messages first, so that
// a duplicate id fails it before anything else was written.
func (s *Store) write(m, c, q *rows, changes []*store.Change, sessions []store.Session, now time.Time) error {
	if _, err := s.insert(0, m); err != nil {
		return err
	}
	last, err := s.insert(1, c)
	if err != nil {
		return err
	}
	// The change rows' numbers are consecutive up to the last one's: the
	// transaction holds the write lock, and a statement's rows are
	// numbered in order.
	for i, ch := range changes {
		ch.Cursor = last - int64(len(changes)-1-i)
	}
	if _, err := s.insert(2, q); err != nil {
		return err
	}
	for _, ss := range sessions {
		if ss.Updated.IsZero() {
			ss.Updated = now
		}
		_, err := s.exec(upSession, ss.Owner.Account, ss.Owner.Resource, ss.JID, ss.ID, ss.Location,
			int64(ss.Max/time.Second), int64(ss.Inbound), int64(ss.Outbound), int64(ss.Acked), ss.Updated.UnixMicro())
		if err != nil {
			return err
		}
	}
	return nil
}

// insert appends the rows r to table t, as many per statement as its
// largest multi-row insert that fits, and returns the last row's number.
func (s *Store) insert(t int, r *rows) (last int64, err error) {
	tb := tables[t]
	args := r.args
	for k, n := range [...]int{64, 8, 1} {
		for len(args) >= n*tb.cols {
			res, err := s.exec(tb.first+k, args[:n*tb.cols]...)
			if err != nil {
				return 0, err
			}
			args = args[n*tb.cols:]
			if last, err = res.LastInsertId(); err != nil {
				return 0, err
			}
		}
	}
	return last, nil
}

// exec runs statement i with args, which must be driver values, under a
// context that is never cancelled (as the real store: the driver would
// watch a cancellable one with a goroutine per statement).
func (s *Store) exec(i int, args ...any) (driver.Result, error) {
	s.args = s.args[:0]
	for k, a := range args {
		s.args = append(s.args, driver.NamedValue{Ordinal: k + 1, Value: a})
	}
	return s.st[i].(driver.StmtExecContext).ExecContext(context.Background(), s.args)
}

// evidence is the evidence as one value: NULL when it has none.
func evidence(e store.Evidence) any {
	if e == (store.Evidence{}) {
		return nil
	}
	return e.From + "\x1f" + e.StanzaID + "\x1f" + e.Condition + "\x1f" + e.Text
}

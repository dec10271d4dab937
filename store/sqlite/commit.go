package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Commit implements store.Store: batches of concurrent callers are written
// in one transaction by the committer goroutine (see package groupcommit).
// A call that finds the committer idle and nothing queued writes its batch
// itself, on its own goroutine (groupcommit's Inline): a lone sender's
// write-ahead then costs no switch to the committer goroutine and back.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	return s.group.Commit(ctx, b)
}

// errStale: a message row was not in the state the committer's cache said
// (another Store value or process changed or pruned it). The transaction is
// rolled back and written again with the cache emptied.
var errStale = errors.New("sqlite: cached message state is stale")

// commitGroup writes the batches in one transaction. A batch whose new
// message exists is left out (the transaction holds SQLite's write lock, so
// the insert itself finds it). If the transaction fails anyway (a full disk,
// say), each batch is tried again in a transaction of its own, so that a
// batch fails only for its own reasons.
//
// It runs on the committer goroutine or on a Commit call's own (see
// Commit), one at a time (the queue holds its lock around each run): that
// run owns s.states and the committer's other fields. Its statements get a context that is never cancelled: the driver would start
// a goroutine per statement to watch one, and waits for SQLite's lock are
// bounded by the busy timeout anyway.
func (s *Store) commitGroup(group []*groupcommit.Request) {
	ctx := context.Background()
	errs := make([]error, len(group))
	err := s.write(ctx, func(w *writer) error {
		for i, r := range group {
			if errs[i] = w.do(r); errs[i] != nil && !errors.Is(errs[i], store.ErrExists) {
				return errs[i]
			}
		}
		return nil
	})
	if err != nil && len(group) > 1 {
		// Each batch again, in order, those refused with ErrExists too:
		// the batch whose message they met may have been of this group,
		// and fail on its own now.
		for i, r := range group {
			unset(r.Batch)
			errs[i] = s.write(ctx, func(w *writer) error { return w.do(r) })
		}
	} else if err != nil {
		errs[0] = err
	}
	ok := false
	for i, r := range group {
		if errs[i] != nil {
			unset(r.Batch)
			if !errors.Is(errs[i], store.ErrExists) {
				errs[i] = fmt.Errorf("sqlite: commit: %w", errs[i])
			}
		} else {
			s.items.Add(1)
			ok = ok || r.Batch != nil // a claim changes no feed
		}
		r.Answer(errs[i])
	}
	if ok {
		s.wake()
	}
	s.checkWAL()
}

// write runs f in a write transaction and then writes the message rows f
// changed. If the cache of message states turns out stale, it empties the
// cache and runs f again in a new transaction.
func (s *Store) write(ctx context.Context, f func(*writer) error) error {
	err := s.writeOnce(ctx, f)
	if errors.Is(err, errStale) {
		s.states.clear()
		err = s.writeOnce(ctx, f)
	}
	return err
}

// writeOnce runs one transaction on the writer's driver connection (see
// wconn.go).
func (s *Store) writeOnce(ctx context.Context, f func(*writer) error) error {
	var err error
	var pages int
	berr := s.onWriter(ctx, func(c *wconn) error {
		var bad bool
		err, bad = s.tx(c, f)
		pages = c.walPages()
		if bad {
			// A transaction may still be open: database/sql drops the
			// connection (and SQLite rolls back) rather than keep it.
			return driver.ErrBadConn
		}
		return err
	})
	s.walPages.Add(int64(pages)) // the checkpoint's threshold: every page written
	if err == nil {
		err = berr
	}
	if err == nil {
		s.txs.Add(1)
		s.written.Add(int64(pages))
	}
	return err
}

// tx runs f and flush in a transaction on c, and commits it. bad reports
// that it failed and its ROLLBACK failed too.
func (s *Store) tx(c *wconn, f func(*writer) error) (err error, bad bool) {
	if _, err := c.exec(begin); err != nil {
		// A transaction that other code left open on this connection (a
		// leak: nothing else uses it meanwhile) would fail every later
		// BEGIN: it is rolled back, and the BEGIN tried once more. With
		// none open the ROLLBACK fails and changes nothing.
		if _, rerr := c.exec(rollback); rerr != nil {
			return err, false
		}
		if _, err := c.exec(begin); err != nil {
			return err, false
		}
	}
	w := &writer{s: s, c: c, now: time.Now(), rows: map[string]*row{}}
	w.last, w.known = c.lastCursor()
	err = f(w)
	if err == nil {
		err = w.flush()
	}
	if err == nil {
		_, err = c.exec(commit)
	}
	if err != nil {
		// Also after a failed COMMIT, which may leave the transaction
		// open. A ROLLBACK that fails may have left it open too (or
		// SQLite rolled back already, as it does after a full disk or an
		// I/O error: the connection is dropped anyway, a reopen), and an
		// open one would make every later BEGIN fail.
		var rerr error
		if s.cfg.failRollback {
			// A ROLLBACK that fails and leaves the transaction open.
			_, rerr = c.conn().ExecContext(context.Background(), "ROLLBACK TO no_such_savepoint", nil)
		} else {
			_, rerr = c.exec(rollback)
		}
		if rerr != nil {
			return err, true
		}
		return err, false
	}
	if w.known {
		c.committed(w.last)
	}
	if w.swept {
		s.unlisted = 0
	} else {
		s.unlisted += w.inserted
	}
	for id, r := range w.rows {
		if r.cur.settled {
			s.states.remove(id) // it never changes again
		} else {
			s.states.put(id, msgState{n: r.n, state: r.cur.state, settled: false})
		}
	}
	return nil, false
}

// orNull is v, or nil (SQL NULL) if v is empty: the driver copies every
// string it binds into memory it allocates and frees (two calls of
// SQLite's allocator), a NULL costs neither.
func orNull(v string) any {
	if v == "" {
		return nil
	}
	return v
}

// unset clears the cursors of a batch that was not written (nil: a claim).
func unset(b *store.Batch) {
	if b == nil {
		return
	}
	for i := range b.Messages {
		b.Messages[i].Cursor = 0
	}
	for i := range b.Changes {
		b.Changes[i].Cursor = 0
	}
}

// wake wakes the waiters of this Store.
func (s *Store) wake() {
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

// writer is one write transaction of the committer. The message rows that
// its changes and sequence numbers touch are updated once each, by flush,
// at the end of the transaction.
type writer struct {
	s    *Store
	c    *wconn
	now  time.Time
	rows map[string]*row // by id: the message rows this transaction read or wrote
	// last is the highest cursor, once known (see next).
	last  int64
	known bool
	// pend holds the arguments of the change rows to insert, changeCols
	// per row (see insertChanges).
	pend []any
	// inserted counts the messages inserted; sweep says that flush lists
	// them (see listing), swept that it did.
	inserted     int
	sweep, swept bool
}

// row is a message row as this transaction sees it.
type row struct {
	n        int64
	was, cur status // in the database before the transaction (as inserted for a new one), and now
	updated  int64  // Unix microseconds of the latest change; 0: unchanged
	seq      int64
	hasSeq   bool
	dirty    bool // flush must write cur, updated and seq
}

type status struct {
	state   tracking.MessageState
	settled bool
}

// lookup returns the row of message id, or nil if there is none: from this
// transaction, else from the cache, else from the database.
func (w *writer) lookup(id string) (*row, error) {
	if r := w.rows[id]; r != nil {
		return r, nil
	}
	if ms, ok := w.s.states.get(id); ok {
		st := status{state: ms.state, settled: ms.settled}
		r := &row{n: ms.n, was: st, cur: st}
		w.rows[id] = r
		return r, nil
	}
	v, err := w.c.queryRow(getMsg, id)
	if v == nil || err != nil {
		return nil, err
	}
	n, _ := v[0].(int64)
	state, _ := v[1].(int64)
	settled, _ := v[2].(int64)
	ms, err := decodeState(state)
	if err != nil {
		return nil, err
	}
	st := status{state: ms, settled: settled != 0}
	r := &row{n: n, was: st, cur: st}
	w.rows[id] = r
	return r, nil
}

// apply writes one batch, in the order messages, changes, sequence
// numbers, sessions (its change rows are inserted later, see
// insertChanges). A batch with one new message that exists fails with
// ErrExists having written nothing of its own (its first statement is
// that insert; the change rows of every batch are inserted at flush); a
// batch with several is checked first, so that it never fails halfway.
func (w *writer) apply(b *store.Batch) error {
	if f := w.s.cfg.failApply; f != nil {
		if err := f(b); err != nil {
			return err
		}
	}
	if len(b.Messages) > 1 {
		if err := w.check(b); err != nil {
			return err
		}
	}
	if len(b.Changes)+len(b.Written)+len(b.Sessions) > 0 {
		w.sweep = true
	}
	for i := range b.Messages {
		m := &b.Messages[i]
		if m.Created.IsZero() {
			m.Created = w.now
		}
		// Its row is the first entry of its history: its n is its cursor,
		// the highest plus one, changes included.
		n, err := w.peek()
		if err != nil {
			return err
		}
		settled := store.SettledState(m.State)
		raw := m.Raw
		if settled {
			raw = nil
		}
		created, state := micros(m.Created), int64(m.State)
		res, err := w.c.exec(insMsg, n,
			m.ID, m.Owner.Account, m.Owner.Resource, m.To, m.Room, orNull(m.Thread), orNull(m.Channel), raw,
			created, micros(m.Deadline), state, settled, created, state)
		if err != nil {
			return err
		}
		if k, err := res.RowsAffected(); err != nil {
			return err
		} else if k == 0 {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		m.Cursor = n
		w.last = n
		w.inserted++
		st := status{state: m.State, settled: settled}
		w.rows[m.ID] = &row{n: n, was: st, cur: st}
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		c.Cursor = 0
		if c.At.IsZero() {
			c.At = w.now
		}
		r, err := w.lookup(c.ID)
		if err != nil {
			return err
		}
		if r == nil {
			continue
		}
		to, settles, changed := store.Next(r.cur.state, r.cur.settled, c.State)
		if !changed {
			continue
		}
		if to != r.cur.state {
			if c.Cursor, err = w.next(); err != nil {
				return err
			}
			w.pend = append(w.pend, c.Cursor, r.n, int64(to), settles, micros(c.At), encodeEvidence(c.Evidence))
		}
		r.cur = status{state: to, settled: settles}
		r.updated = micros(c.At)
		r.dirty = true
	}
	for _, wr := range b.Written {
		r, err := w.lookup(wr.ID)
		if err != nil {
			return err
		}
		if r == nil {
			continue
		}
		r.seq, r.hasSeq, r.dirty = int64(wr.Seq), true, true
	}
	for _, ss := range b.Sessions {
		if ss.Updated.IsZero() {
			ss.Updated = w.now
		}
		_, err := w.c.exec(upSession,
			ss.Owner.Account, ss.Owner.Resource, ss.JID, ss.ID, ss.Location, int64(ss.Max/time.Second),
			int64(ss.Inbound), int64(ss.Outbound), int64(ss.Acked), micros(ss.Updated))
		if err != nil {
			return err
		}
	}
	return nil
}

// check refuses a batch whose new messages exist, in the database, earlier
// in the transaction or earlier in the batch.
func (w *writer) check(b *store.Batch) error {
	mine := map[string]bool{}
	for _, m := range b.Messages {
		if mine[m.ID] {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		v, err := w.c.queryRow(exists, m.ID)
		if err != nil {
			return err
		}
		if v != nil {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		mine[m.ID] = true
	}
	return nil
}

// next returns the cursor of the next change and takes it: the highest
// cursor plus one. The transaction holds SQLite's write lock, and its
// changes and messages take their cursors in turn, here and in the message
// insert (see peek).
func (w *writer) next() (int64, error) {
	n, err := w.peek()
	if err != nil {
		return 0, err
	}
	w.last = n
	return n, nil
}

// peek returns the next cursor without taking it. The highest cursor is
// read once per transaction, or not at all while the committer's last
// transaction on the connection left it known (see wconn.lastCursor).
func (w *writer) peek() (int64, error) {
	if !w.known {
		v, err := w.c.queryRow(lastCur)
		if err != nil {
			return 0, err
		}
		if v == nil {
			return 0, errors.New("sqlite: no last cursor")
		}
		w.last, _ = v[0].(int64)
		w.known = true
		w.s.cursorReads.Add(1)
	}
	return w.last + 1, nil
}

// insertChanges inserts the change rows apply queued, as many per
// statement as the prepared multi-row inserts take (insChanges, largest
// first): a recorder's transaction holds hundreds, and a statement per
// row cost twice the CPU.
func (w *writer) insertChanges() error {
	rows := w.pend
	for _, st := range insChanges {
		for n := st.rows * changeCols; len(rows) >= n; rows = rows[n:] {
			if _, err := w.c.exec(st.st, rows[:n]...); err != nil {
				return err
			}
		}
	}
	clear(w.pend)
	w.pend = w.pend[:0]
	return nil
}

// flush inserts the queued change rows and writes each changed message
// row once. The update checks that the row is still the one it was (n,
// state, settled): if not, the cache was stale and the transaction is
// refused with errStale. The row's n, the cursor of the message's
// creation, is never given to another message (cursors are never reused,
// see Prune), so it needs no id check besides.
func (w *writer) flush() error {
	if err := w.insertChanges(); err != nil {
		return err
	}
	for _, r := range w.rows {
		if !r.dirty {
			continue
		}
		var seq any
		if r.hasSeq {
			seq = r.seq
		}
		// The cheapest statement that does it: an update that leaves
		// settled and updated alone touches no index.
		var res driver.Result
		var err error
		switch {
		case r.updated == 0:
			res, err = w.c.exec(setSeq, seq, r.n, int64(r.was.state), r.was.settled)
		case !r.cur.settled:
			res, err = w.c.exec(updMsg, int64(r.cur.state), r.updated, seq, r.n, int64(r.was.state))
		default:
			res, err = w.c.exec(settleMsg, int64(r.cur.state), r.updated, seq, r.n, int64(r.was.state))
		}
		if err != nil {
			return err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if k != 1 {
			return errStale
		}
	}
	if w.sweep || w.s.unlisted+w.inserted >= sweepEvery {
		v, err := w.c.queryRow(maxN)
		if err != nil {
			return err
		}
		top, _ := v[0].(int64) // NULL (no message): 0
		if to := top - w.s.listLag(); to > 0 {
			if _, err := w.c.exec(list, to); err != nil {
				return err
			}
			if _, err := w.c.exec(listed, to); err != nil {
				return err
			}
		}
		w.swept = true
	}
	return nil
}

// Listing: a message is written ahead unlisted, so that a lone sender's
// write-ahead writes two pages (the message row and its id index entry),
// not also an entry of the pending index, messages_pending, which its
// settling would then delete again. The transactions that carry state
// changes, sequence numbers or sessions (a recorder's, shared by the
// messages of many write-aheads) sweep: they list every unsettled message
// above listing.upto and at most listLag below the highest n (cursors:
// the creations and changes of about 4,000 messages), and raise upto to
// that bound. A message that settles before it falls that far behind
// never enters the index (on a busy stream, nearly all: a row update and
// two index writes less per message), and every unsettled message is
// listed or above upto, which Pending reads both of: the range above upto
// holds at most the messages of the last listLag cursors and of the
// sweepEvery write-aheads of a committer that has not swept (the
// transaction that brings a committer's write-aheads since its last sweep
// to sweepEvery sweeps).
const (
	listLag    = 16384
	sweepEvery = 1000
)

// listLag is the lag of listing (see listing), Config.listLag in tests.
func (s *Store) listLag() int64 {
	if s.cfg.listLag > 0 {
		return s.cfg.listLag
	}
	return listLag
}

// The statements of a commit, prepared once on the writer's connection (see
// wconn.go).
const (
	// sqlInsMsg inserts a message unlisted (see listing), its n (its
	// cursor) given (see peek). Its updated and first are bound again
	// (its created and state), so that its parameters are nameless: the
	// driver looks up each parameter's name at every execution, and a
	// name (?9) costs a Go string each time. The row updates below are
	// nameless for the same reason. An empty thread or channel (most
	// messages) is bound as NULL (see orNull).
	sqlInsMsg = `INSERT INTO messages
		(n, id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq, state, settled, updated, first, listed)
		VALUES (?, ?, ?, ?, ?, ?, coalesce(?, ''), coalesce(?, ''), ?, ?, ?, NULL, ?, ?, ?, ?, 0)
		ON CONFLICT (id) DO NOTHING`
	sqlExists  = `SELECT 1 FROM messages WHERE id = ?`
	sqlLastCur = `SELECT ` + sqlLastCursor
	sqlGetMsg  = `SELECT n, state, settled FROM messages WHERE id = ?`
	// sqlSetSeq's state and settled terms only detect a stale cache early
	// (a sequence number is stored whatever the state); the updates of a
	// change (sqlUpdMsg, sqlSettleMsg) are what must never apply to a
	// state other than the one they were computed from.
	sqlSetSeq = `UPDATE messages SET seq = ? WHERE n = ? AND state = ? AND settled = ?`
	sqlUpdMsg = `UPDATE messages SET state = ?, updated = ?, seq = coalesce(?, seq)
		WHERE n = ? AND state = ? AND settled = 0`
	sqlSettleMsg = `UPDATE messages SET state = ?, settled = 1, updated = ?, raw = NULL, seq = coalesce(?, seq)
		WHERE n = ? AND state = ? AND settled = 0`
	sqlUpSession = `INSERT INTO sessions
		(account, resource, jid, smid, location, max, inbound, outbound, acked, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (account, resource) DO UPDATE SET jid = excluded.jid, smid = excluded.smid,
		location = excluded.location, max = excluded.max, inbound = excluded.inbound,
		outbound = excluded.outbound, acked = excluded.acked, updated = excluded.updated`
	// sqlMaxN, sqlList and sqlListed are the sweep (see listing).
	sqlMaxN   = `SELECT max(n) FROM messages`
	sqlList   = `UPDATE messages SET listed = 1 WHERE n > coalesce((SELECT upto FROM listing), 0) AND n <= ?1 AND settled = 0 AND listed = 0`
	sqlListed = `UPDATE listing SET upto = ?1 WHERE upto < ?1`
)

// The statements of a commit, by index into stmts.
const (
	insMsg = iota
	exists
	insChanges1 // three multi-row inserts of changes, see insChanges
	insChanges8
	insChanges64
	lastCur
	getMsg
	setSeq
	updMsg
	settleMsg
	upSession
	maxN
	list
	listed
	nStmts
)

// insChanges are the multi-row inserts of changes and their rows, largest
// first; each row takes changeCols arguments.
var insChanges = [...]struct{ st, rows int }{{insChanges64, 64}, {insChanges8, 8}, {insChanges1, 1}}

const changeCols = 6

// sqlInsChanges inserts rows change rows, their cursors given (see next).
func sqlInsChanges(rows int) string {
	return `INSERT INTO changes (cursor, message, state, settles, at, evidence) VALUES ` +
		strings.TrimSuffix(strings.Repeat(`(?, ?, ?, ?, ?, ?), `, rows), `, `)
}

var stmtSQL = [...]string{
	insMsg: sqlInsMsg, exists: sqlExists, getMsg: sqlGetMsg, lastCur: sqlLastCur,
	insChanges1: sqlInsChanges(1), insChanges8: sqlInsChanges(8), insChanges64: sqlInsChanges(64),
	setSeq: sqlSetSeq, updMsg: sqlUpdMsg, settleMsg: sqlSettleMsg, upSession: sqlUpSession,
	maxN: sqlMaxN, list: sqlList, listed: sqlListed,
}

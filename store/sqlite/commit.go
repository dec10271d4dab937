package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
)

// Commit implements store.Store: batches of concurrent callers are written
// in one transaction by the committer goroutine (see package groupcommit).
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	return s.group.Commit(ctx, b)
}

// commitGroup writes the batches in one transaction. The transaction
// holds SQLite's write lock, so a batch whose new message exists is found
// by looking first, and left out. If the transaction fails anyway (a full
// disk, say), each batch is tried again in a transaction of its own, so
// that a batch fails only for its own reasons.
func (s *Store) commitGroup(group []*groupcommit.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make([]error, len(group))
	err := s.inTx(ctx, func(ts *txStmts) error {
		ids := map[string]bool{}
		for i, r := range group {
			if errs[i] = s.check(ctx, ts, r.Batch, ids); errs[i] != nil {
				continue
			}
			if err := s.apply(ctx, ts, r.Batch); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(group) > 1 {
		for i, r := range group {
			if errs[i] != nil {
				continue
			}
			unset(r.Batch)
			errs[i] = s.inTx(ctx, func(ts *txStmts) error {
				if err := s.check(ctx, ts, r.Batch, map[string]bool{}); err != nil {
					return err
				}
				return s.apply(ctx, ts, r.Batch)
			})
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
			ok = true
		}
		r.Answer(errs[i])
	}
	if ok {
		s.wake()
	}
}

// inTx runs f in a write transaction with the prepared statements.
func (s *Store) inTx(ctx context.Context, f func(*txStmts) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ts := s.st.in(ctx, tx)
	defer ts.close()
	if err := f(ts); err != nil {
		return err
	}
	return tx.Commit()
}

// check refuses a batch whose new messages exist, in the database or
// earlier in the group (ids); it adds the batch's ids to ids.
func (s *Store) check(ctx context.Context, ts *txStmts, b *store.Batch, ids map[string]bool) error {
	mine := map[string]bool{}
	for _, m := range b.Messages {
		if ids[m.ID] || mine[m.ID] {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		var one int
		err := ts.exists.QueryRowContext(ctx, m.ID).Scan(&one)
		if err == nil {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		mine[m.ID] = true
	}
	for id := range mine {
		ids[id] = true
	}
	return nil
}

// unset clears the cursors of a batch that was not written.
func unset(b *store.Batch) {
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

// apply writes one batch inside the group's transaction.
func (s *Store) apply(ctx context.Context, ts *txStmts, b *store.Batch) error {
	now := time.Now()
	for i := range b.Messages {
		m := &b.Messages[i]
		if m.Created.IsZero() {
			m.Created = now
		}
		settled := store.SettledState(m.State)
		raw := m.Raw
		if settled {
			raw = nil
		}
		var n int64
		err := ts.insMsg.QueryRowContext(ctx,
			m.ID, m.Owner.Account, m.Owner.Resource, m.To, m.Room, m.Thread, m.Channel, raw,
			micros(m.Created), micros(m.Deadline), int64(m.State), settled, micros(m.Created)).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		if err != nil {
			return err
		}
		res, err := ts.insChange.ExecContext(ctx, n, int64(m.State), settled, micros(m.Created), nil)
		if err != nil {
			return err
		}
		if m.Cursor, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		c.Cursor = 0
		if c.At.IsZero() {
			c.At = now
		}
		var n, state int64
		var settled bool
		err := ts.getMsg.QueryRowContext(ctx, c.ID).Scan(&n, &state, &settled)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		from, err := decodeState(state)
		if err != nil {
			return err
		}
		to, settles, changed := store.Next(from, settled, c.State)
		if !changed {
			continue
		}
		if to != from {
			res, err := ts.insChange.ExecContext(ctx, n, int64(to), settles, micros(c.At), encodeEvidence(c.Evidence))
			if err != nil {
				return err
			}
			if c.Cursor, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		_, err = ts.updMsg.ExecContext(ctx, int64(to), settles, micros(c.At), settles, n)
		if err != nil {
			return err
		}
	}
	for _, w := range b.Written {
		if _, err := ts.setSeq.ExecContext(ctx, int64(w.Seq), w.ID); err != nil {
			return err
		}
	}
	for _, ss := range b.Sessions {
		if ss.Updated.IsZero() {
			ss.Updated = now
		}
		_, err := ts.upSession.ExecContext(ctx,
			ss.Owner.Account, ss.Owner.Resource, ss.JID, ss.ID, ss.Location, int64(ss.Max/time.Second),
			int64(ss.Inbound), int64(ss.Outbound), int64(ss.Acked), micros(ss.Updated))
		if err != nil {
			return err
		}
	}
	return nil
}

// The statements of a commit, prepared once on the writer connection.
const (
	sqlInsMsg = `INSERT INTO messages
		(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq, state, settled, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING RETURNING n`
	sqlExists    = `SELECT 1 FROM messages WHERE id = ?`
	sqlInsChange = `INSERT INTO changes (msg, state, settles, at, evidence) VALUES (?, ?, ?, ?, ?)`
	sqlGetMsg    = `SELECT n, state, settled FROM messages WHERE id = ?`
	sqlUpdMsg    = `UPDATE messages SET state = ?, settled = ?, updated = ?,
		raw = CASE WHEN ? THEN NULL ELSE raw END WHERE n = ?`
	sqlSetSeq    = `UPDATE messages SET seq = ? WHERE id = ?`
	sqlUpSession = `INSERT INTO sessions
		(account, resource, jid, smid, location, max, inbound, outbound, acked, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (account, resource) DO UPDATE SET jid = excluded.jid, smid = excluded.smid,
		location = excluded.location, max = excluded.max, inbound = excluded.inbound,
		outbound = excluded.outbound, acked = excluded.acked, updated = excluded.updated`
)

type stmts struct {
	insMsg, exists, insChange, getMsg, updMsg, setSeq, upSession *sql.Stmt
}

func (st *stmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, p := range []struct {
		s **sql.Stmt
		q string
	}{
		{&st.insMsg, sqlInsMsg}, {&st.exists, sqlExists}, {&st.insChange, sqlInsChange}, {&st.getMsg, sqlGetMsg},
		{&st.updMsg, sqlUpdMsg}, {&st.setSeq, sqlSetSeq}, {&st.upSession, sqlUpSession},
	} {
		var err error
		if *p.s, err = db.PrepareContext(ctx, p.q); err != nil {
			return err
		}
	}
	return nil
}

func (st *stmts) close() {
	for _, s := range []*sql.Stmt{st.insMsg, st.exists, st.insChange, st.getMsg, st.updMsg, st.setSeq, st.upSession} {
		if s != nil {
			s.Close()
		}
	}
}

// txStmts are the statements bound to one transaction.
type txStmts stmts

func (st *stmts) in(ctx context.Context, tx *sql.Tx) *txStmts {
	return &txStmts{
		insMsg: tx.StmtContext(ctx, st.insMsg), exists: tx.StmtContext(ctx, st.exists),
		insChange: tx.StmtContext(ctx, st.insChange), getMsg: tx.StmtContext(ctx, st.getMsg),
		updMsg: tx.StmtContext(ctx, st.updMsg), setSeq: tx.StmtContext(ctx, st.setSeq),
		upSession: tx.StmtContext(ctx, st.upSession),
	}
}

func (ts *txStmts) close() { (*stmts)(ts).close() }

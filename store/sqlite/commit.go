package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// maxGroup bounds the batches of one group commit.
const maxGroup = 512

// request is a batch waiting for the committer.
type request struct {
	b     *store.Batch
	state atomic.Int32 // queued, taken (the committer answers), cancelled
	done  chan error
}

const (
	queued int32 = iota
	taken
	cancelled
)

// Commit implements store.Store. Batches of concurrent callers are written
// in one transaction by the committer goroutine. Once the committer took a
// batch, Commit waits for its outcome even if ctx ends: a batch is either
// refused before anything happened or its real result is returned, never
// "cancelled" while it may still be committed.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if b == nil {
		return fmt.Errorf("%w: nil batch", store.ErrInvalid)
	}
	if err := b.Validate(); err != nil {
		return err
	}
	if s.isClosed() {
		return store.ErrClosed
	}
	if len(b.Messages)+len(b.Changes)+len(b.Written)+len(b.Sessions) == 0 {
		return nil
	}
	r := &request{b: b, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return store.ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return ctx.Err()
		}
	case <-s.ctx.Done():
		if r.state.CompareAndSwap(queued, cancelled) {
			return store.ErrClosed
		}
	}
	return <-r.done
}

// committer writes queued batches, as many as are waiting in one
// transaction, until Close.
func (s *Store) committer() {
	group := make([]*request, 0, maxGroup)
	for {
		select {
		case <-s.ctx.Done():
			return
		case r := <-s.reqs:
			group = append(group[:0], r)
		}
	more:
		for len(group) < maxGroup {
			select {
			case r := <-s.reqs:
				group = append(group, r)
			default:
				break more
			}
		}
		live := group[:0]
		for _, r := range group {
			if r.state.CompareAndSwap(queued, taken) {
				live = append(live, r)
			}
		}
		if len(live) > 0 {
			s.commitGroup(live)
		}
		clear(group)
	}
}

// commitGroup writes the batches in one transaction, each inside a
// savepoint so that a failing batch fails alone.
func (s *Store) commitGroup(group []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make([]error, len(group))
	err := func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i, r := range group {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT batch"); err != nil {
				return err
			}
			if errs[i] = s.apply(ctx, tx, r.b); errs[i] != nil {
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO batch"); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE batch"); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		err = fmt.Errorf("sqlite: commit: %w", err)
	}
	ok := false
	for i, r := range group {
		if err != nil {
			errs[i] = err
		}
		if errs[i] != nil {
			unset(r.b)
		} else {
			ok = true
		}
		r.done <- errs[i]
	}
	if ok {
		s.wake()
	}
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
func (s *Store) apply(ctx context.Context, tx *sql.Tx, b *store.Batch) error {
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
		err := tx.QueryRowContext(ctx, `INSERT INTO messages
			(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq, state, settled, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING RETURNING n`,
			m.ID, m.Owner.Account, m.Owner.Resource, m.To, m.Room, m.Thread, m.Channel, raw,
			micros(m.Created), micros(m.Deadline), int64(m.State), settled, micros(m.Created)).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: message %q: %w", m.ID, store.ErrExists)
		}
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO changes (msg, state, settles, at, evidence) VALUES (?, ?, ?, ?, NULL)`,
			n, int64(m.State), settled, micros(m.Created))
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
		err := tx.QueryRowContext(ctx, `SELECT n, state, settled FROM messages WHERE id = ?`, c.ID).Scan(&n, &state, &settled)
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
			res, err := tx.ExecContext(ctx, `INSERT INTO changes (msg, state, settles, at, evidence) VALUES (?, ?, ?, ?, ?)`,
				n, int64(to), settles, micros(c.At), encodeEvidence(c.Evidence))
			if err != nil {
				return err
			}
			if c.Cursor, err = res.LastInsertId(); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE messages SET state = ?, settled = ?, updated = ?,
			raw = CASE WHEN ? THEN NULL ELSE raw END WHERE n = ?`,
			int64(to), settles, micros(c.At), settles, n)
		if err != nil {
			return err
		}
	}
	for _, w := range b.Written {
		if _, err := tx.ExecContext(ctx, `UPDATE messages SET seq = ? WHERE id = ?`, int64(w.Seq), w.ID); err != nil {
			return err
		}
	}
	for _, ss := range b.Sessions {
		if ss.Updated.IsZero() {
			ss.Updated = now
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions
			(account, resource, jid, smid, location, max, inbound, outbound, acked, updated)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (account, resource) DO UPDATE SET jid = excluded.jid, smid = excluded.smid,
			location = excluded.location, max = excluded.max, inbound = excluded.inbound,
			outbound = excluded.outbound, acked = excluded.acked, updated = excluded.updated`,
			ss.Owner.Account, ss.Owner.Resource, ss.JID, ss.ID, ss.Location, int64(ss.Max/time.Second),
			int64(ss.Inbound), int64(ss.Outbound), int64(ss.Acked), micros(ss.Updated))
		if err != nil {
			return err
		}
	}
	return nil
}

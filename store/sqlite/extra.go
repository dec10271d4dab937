package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// pruneChunk bounds the messages one pruning transaction deletes, so that
// commits are not held up for long.
const pruneChunk = 5000

// Prune implements store.Store.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	if s.isClosed() {
		return 0, store.ErrClosed
	}
	defer s.wrote()
	total := 0
	for {
		n, err := s.pruneChunk(ctx, micros(before))
		total += n
		if err != nil {
			return total, fmt.Errorf("sqlite: prune: %w", err)
		}
		if n < pruneChunk {
			break
		}
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM keys WHERE expires != 0 AND expires < ?`, micros(time.Now())); err != nil {
		return total, fmt.Errorf("sqlite: prune keys: %w", err)
	}
	return total, nil
}

// pruneChunk deletes up to pruneChunk messages and their changes. When
// that deletes the highest cursor (a message's creation or a change), a
// tombstone change (message 0: no message has it, so no read sees it) keeps it:
// a new cursor is the highest in the tables plus one, which must stay above
// every cursor a follower may have seen. Older tombstones are deleted.
func (s *Store) pruneChunk(ctx context.Context, before int64) (int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT `+sqlLastCursor).Scan(&last); err != nil {
		return 0, err
	}
	_, err = tx.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS doomed (n INTEGER PRIMARY KEY);
		DELETE FROM doomed;
		INSERT INTO doomed SELECT n FROM messages WHERE settled = 1 AND updated < ?1
			OR settled = 0 AND state IN (?2, ?3) AND deadline != 0 AND deadline < ?1 LIMIT ?4;
		DELETE FROM changes WHERE message IN (SELECT n FROM doomed)`,
		before, int64(tracking.DeliveredToRecipient), int64(tracking.Error), pruneChunk)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE n IN (SELECT n FROM doomed)`)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM changes WHERE message = 0 AND cursor < ?1;
		INSERT INTO changes (cursor, message, state, settles, at) SELECT ?1, 0, 0, 0, 0 WHERE ?1 > `+sqlLastCursor, last)
	if err != nil {
		return 0, err
	}
	return int(n), tx.Commit()
}

// Key implements store.Store.
func (s *Store) Key(ctx context.Context, scope, name string) (string, bool, error) {
	if s.isClosed() {
		return "", false, store.ErrClosed
	}
	var value string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM keys WHERE scope = ? AND name = ? AND (expires = 0 OR expires >= ?)`,
		scope, name, micros(time.Now())).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, readErr(err)
	}
	return value, true, nil
}

// PutJob implements store.Store.
func (s *Store) PutJob(ctx context.Context, j store.Job) error {
	if s.isClosed() {
		return store.ErrClosed
	}
	defer s.wrote()
	if err := j.Validate(); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO jobs (queue, name, due, data, attempts) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (queue, name) DO UPDATE SET due = excluded.due, data = excluded.data, attempts = excluded.attempts`,
		j.Queue, j.Name, micros(j.Due), j.Data, j.Attempts)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// AddJob implements store.Store.
func (s *Store) AddJob(ctx context.Context, j store.Job) (bool, error) {
	if s.isClosed() {
		return false, store.ErrClosed
	}
	defer s.wrote()
	if err := j.Validate(); err != nil {
		return false, err
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO jobs (queue, name, due, data, attempts) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (queue, name) DO NOTHING`, j.Queue, j.Name, micros(j.Due), j.Data, j.Attempts)
	if err != nil {
		return false, fmt.Errorf("sqlite: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ClaimJobs implements store.Store.
func (s *Store) ClaimJobs(ctx context.Context, queue string, now time.Time, lease time.Duration, limit int) ([]store.Job, error) {
	if s.isClosed() {
		return nil, store.ErrClosed
	}
	defer s.wrote()
	if lease <= 0 || limit <= 0 {
		return nil, fmt.Errorf("%w: claim of %d jobs for %v", store.ErrInvalid, limit, lease)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	defer tx.Rollback()
	due := now.Add(lease)
	// The transaction holds SQLite's write lock: the select and the update
	// see the same jobs.
	rows, err := tx.QueryContext(ctx, `SELECT name, data, attempts FROM jobs
		WHERE queue = ? AND due <= ? ORDER BY due, name LIMIT ?`, queue, micros(now), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	var js []store.Job
	for rows.Next() {
		j := store.Job{Queue: queue, Due: due}
		if err := rows.Scan(&j.Name, &j.Data, &j.Attempts); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		j.Attempts++
		js = append(js, j)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE jobs SET due = ?, attempts = attempts + 1
		WHERE queue = ? AND name IN (SELECT name FROM jobs WHERE queue = ? AND due <= ? ORDER BY due, name LIMIT ?)`,
		micros(due), queue, queue, micros(now), limit)
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	return js, nil
}

// DeleteJob implements store.Store.
func (s *Store) DeleteJob(ctx context.Context, queue, name string) (bool, error) {
	if s.isClosed() {
		return false, store.ErrClosed
	}
	defer s.wrote()
	res, err := s.w.ExecContext(ctx, `DELETE FROM jobs WHERE queue = ? AND name = ?`, queue, name)
	if err != nil {
		return false, fmt.Errorf("sqlite: %w", err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

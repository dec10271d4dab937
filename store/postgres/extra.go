package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const pruneChunk = 5000

// Prune implements store.Store. It deletes in chunks, each message with
// its history in one transaction, so that no transaction runs long. (The
// history is deleted by a second statement: its fresh snapshot sees a
// change committed while the first one waited for the message's lock.)
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	if s.isClosed() {
		return 0, store.ErrClosed
	}
	total := 0
	for {
		n, err := s.pruneChunk(ctx, before)
		if err != nil {
			return total, fmt.Errorf("postgres: prune: %w", err)
		}
		total += n
		if n < pruneChunk {
			break
		}
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM xmpptrack_keys WHERE expires < $1`, time.Now()); err != nil {
		return total, fmt.Errorf("postgres: prune keys: %w", err)
	}
	return total, nil
}

func (s *Store) pruneChunk(ctx context.Context, before time.Time) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	// Index scans only (an OR of the two conditions would scan the whole
	// table): settled_at (updated as of settling), and the pending
	// messages of each owner (the owners found by skipping through the
	// pending index).
	rows, err := tx.Query(ctx, `WITH RECURSIVE o AS (
			(SELECT account, resource FROM xmpptrack_messages WHERE NOT settled ORDER BY account, resource LIMIT 1)
			UNION ALL
			SELECT x.account, x.resource FROM o, LATERAL (SELECT account, resource FROM xmpptrack_messages
				WHERE NOT settled AND (account, resource) > (o.account, o.resource)
				ORDER BY account, resource LIMIT 1) x)
		DELETE FROM xmpptrack_messages WHERE n = ANY (ARRAY(
			SELECT n FROM xmpptrack_messages WHERE settled_at < $1
			UNION ALL
			SELECT m.n FROM o, LATERAL (SELECT n FROM xmpptrack_messages m WHERE m.account = o.account
				AND m.resource = o.resource AND NOT m.settled AND m.state IN ($3, $4) AND m.deadline < $1
				OFFSET 0) m -- per owner: not flattened into a join
			LIMIT $2)) RETURNING n`,
		before, pruneChunk, int16(tracking.DeliveredToRecipient), int16(tracking.Error))
	if err != nil {
		return 0, err
	}
	ns, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, err
	}
	if len(ns) == 0 {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM xmpptrack_changes WHERE msg = ANY($1)`, ns); err != nil {
		return 0, err
	}
	return len(ns), tx.Commit(ctx)
}

// Key implements store.Store.
func (s *Store) Key(ctx context.Context, scope, name string) (string, bool, error) {
	if s.isClosed() {
		return "", false, store.ErrClosed
	}
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM xmpptrack_keys WHERE scope = $1 AND name = $2
		AND (expires IS NULL OR expires >= $3)`, scope, name, time.Now()).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("postgres: %w", err)
	}
	return v, true, nil
}

// PutJob implements store.Store.
func (s *Store) PutJob(ctx context.Context, j store.Job) error {
	if s.isClosed() {
		return store.ErrClosed
	}
	if err := j.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO xmpptrack_jobs (queue, name, due, data, attempts) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (queue, name) DO UPDATE SET due = EXCLUDED.due, data = EXCLUDED.data, attempts = EXCLUDED.attempts`,
		j.Queue, j.Name, j.Due, j.Data, j.Attempts)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// AddJob implements store.Store.
func (s *Store) AddJob(ctx context.Context, j store.Job) (bool, error) {
	if s.isClosed() {
		return false, store.ErrClosed
	}
	if err := j.Validate(); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO xmpptrack_jobs (queue, name, due, data, attempts) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (queue, name) DO NOTHING`, j.Queue, j.Name, j.Due, j.Data, j.Attempts)
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// ClaimJobs implements store.Store. Claimers skip the rows other claimers
// hold (FOR UPDATE SKIP LOCKED), so that they never wait for each other.
func (s *Store) ClaimJobs(ctx context.Context, queue string, now time.Time, lease time.Duration, limit int) ([]store.Job, error) {
	if s.isClosed() {
		return nil, store.ErrClosed
	}
	if lease <= 0 || limit <= 0 {
		return nil, fmt.Errorf("%w: claim of %d jobs for %v", store.ErrInvalid, limit, lease)
	}
	rows, err := s.pool.Query(ctx, `WITH c AS (
			SELECT name, due AS old FROM xmpptrack_jobs WHERE queue = $1 AND due <= $2
			ORDER BY due, name LIMIT $3 FOR UPDATE SKIP LOCKED)
		UPDATE xmpptrack_jobs j SET due = $4, attempts = j.attempts + 1 FROM c
		WHERE j.queue = $1 AND j.name = c.name
		RETURNING j.name, j.data, j.attempts, j.due, c.old`, queue, now, limit, now.Add(lease))
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer rows.Close()
	type claimed struct {
		j   store.Job
		old time.Time
	}
	var cs []claimed
	for rows.Next() {
		c := claimed{j: store.Job{Queue: queue}}
		if err := rows.Scan(&c.j.Name, &c.j.Data, &c.j.Attempts, &c.j.Due, &c.old); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	slices.SortFunc(cs, func(a, b claimed) int {
		return cmp.Or(a.old.Compare(b.old), cmp.Compare(a.j.Name, b.j.Name))
	})
	js := make([]store.Job, len(cs))
	for i, c := range cs {
		js[i] = c.j
	}
	return js, nil
}

// DeleteJob implements store.Store.
func (s *Store) DeleteJob(ctx context.Context, queue, name string) (bool, error) {
	if s.isClosed() {
		return false, store.ErrClosed
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM xmpptrack_jobs WHERE queue = $1 AND name = $2`, queue, name)
	if err != nil {
		return false, fmt.Errorf("postgres: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

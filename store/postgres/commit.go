package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
)

// Commit implements store.Store: batches of concurrent callers are written
// in one transaction by the committer goroutine (see package groupcommit).
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	return s.group.Commit(ctx, b)
}

// errConflict: some new message ids exist (found by the insert).
var errConflict = errors.New("conflict")

// commitGroup writes the batches in one transaction. A batch whose new
// message exists fails alone: the transaction is tried again without it.
// Deadlocks and serialization failures are retried too.
func (s *Store) commitGroup(group []*groupcommit.Request) {
	errs := make([]error, len(group))
	// Duplicates within the group: the later batch fails.
	seen := map[string]bool{}
	for i, r := range group {
		ids := map[string]bool{}
		for _, m := range r.Batch.Messages {
			if ids[m.ID] || seen[m.ID] {
				errs[i] = fmt.Errorf("postgres: message %q: %w", m.ID, store.ErrExists)
			}
			ids[m.ID] = true
		}
		if errs[i] == nil {
			for id := range ids {
				seen[id] = true
			}
		}
	}
	var out []result
	for attempt := 0; ; attempt++ {
		var live []int
		for i := range group {
			if errs[i] == nil {
				live = append(live, i)
			}
		}
		if len(live) == 0 {
			break
		}
		var conflicts map[string]bool
		var err error
		out, conflicts, err = s.tryGroup(group, live)
		if err == nil {
			break
		}
		if errors.Is(err, errConflict) {
			for _, i := range live {
				for _, m := range group[i].Batch.Messages {
					if conflicts[m.ID] {
						errs[i] = fmt.Errorf("postgres: message %q: %w", m.ID, store.ErrExists)
					}
				}
			}
			continue
		}
		if retryable(err) && attempt < 5 {
			continue
		}
		// A broken connection before the call reached the server, or the
		// server ending the session (which aborts the call): nothing was
		// written, try again on fresh connections. Other connection errors
		// leave the outcome unknown: the call may have committed. It did
		// not if its session ended and none of the group's new messages
		// exists.
		if unsent(err) && attempt < 2 {
			s.pool.Reset()
			continue
		}
		var doubt *inDoubt
		if errors.As(err, &doubt) {
			s.pool.Reset()
			switch s.settle(group, live, doubt.pid) {
			case notCommitted:
				if attempt < 2 {
					continue
				}
				err = fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, err)
			case committed:
				// The group is one transaction: every batch of it is
				// stored. Their cursors are lost with the answer.
				err = fmt.Errorf("%w: %w", store.ErrCursorsUnknown, err)
			default:
				err = fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, err)
			}
		}
		for _, i := range live {
			errs[i] = fmt.Errorf("postgres: commit: %w", err)
		}
		out = nil
		break
	}
	for _, r := range group {
		unset(r.Batch)
	}
	for _, o := range out {
		b := group[o.batch].Batch
		if o.change < 0 {
			b.Messages[o.msg].Cursor = o.cursor
		} else {
			b.Changes[o.change].Cursor = o.cursor
		}
	}
	ok := false
	for i, r := range group {
		ok = ok || errs[i] == nil
		r.Answer(errs[i])
	}
	if ok {
		s.wake()
	}
}

// unsent reports an error after which the group was certainly not
// committed, and which fresh connections may not have.
func unsent(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return transient(err)
	}
	var atCommit *commitError
	return pgconn.SafeToRetry(err) && !errors.As(err, &atCommit)
}

// retryable reports a serialization failure, a deadlock, or a new
// message's id taken by a transaction that rolled back (tryGroup).
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01" || pe.Code == "23505")
}

// existing returns those of ids that are stored.
func (s *Store) existing(ctx context.Context, ids []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM xmpptrack_messages WHERE id = ANY ($1)`, ids)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	m := make(map[string]bool, len(found))
	for _, id := range found {
		m[id] = true
	}
	return m, nil
}

func unset(b *store.Batch) {
	for i := range b.Messages {
		b.Messages[i].Cursor = 0
	}
	for i := range b.Changes {
		b.Changes[i].Cursor = 0
	}
}

// result is a cursor to hand back: of message msg (change < 0) or of
// change change, in batch batch.
type result struct {
	batch, msg, change int
	cursor             int64
}

// tryGroup writes the live batches of group with one call of
// xmpptrack_commit, a transaction of its own (one round trip). It returns
// the ids that exist already (with errConflict), or the cursors to hand
// back.
func (s *Store) tryGroup(group []*groupcommit.Request, live []int) ([]result, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, keys := build(group, live, time.Now())
	var got []int32
	var last *int64
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	pid := conn.Conn().PgConn().PID()
	if s.cfg.beforeCommit == nil {
		err = conn.QueryRow(ctx, commitCall, a.list()...).Scan(&got, &last)
	} else {
		err = s.callInTx(ctx, conn, a, &got, &last)
	}
	conn.Release()
	if err != nil && doubtful(err) {
		return nil, nil, &inDoubt{pid: pid, err: err}
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch pe.Code {
			case "23505":
				// A new message's id exists (or did, in a transaction
				// that the insert waited for): which ones?
				if pe.TableName != "xmpptrack_messages" {
					return nil, nil, err
				}
				conflicts, qerr := s.existing(ctx, a.mID)
				if qerr != nil {
					return nil, nil, fmt.Errorf("%w (looking up the ids: %w)", err, qerr)
				}
				if len(conflicts) == 0 {
					return nil, nil, err // rolled back meanwhile: retryable
				}
				return nil, conflicts, errConflict
			case "XT422":
				return nil, nil, fmt.Errorf("%s: %w", pe.Message, store.ErrForeign)
			}
		}
		return nil, nil, err
	}
	var out []result
	if len(got) > 0 && last != nil {
		base := *last - int64(len(got)) + 1
		for k, key := range got {
			r := keys[key]
			r.cursor = base + int64(k)
			out = append(out, r)
		}
	}
	return out, nil, nil
}

// callInTx is the call in an explicit transaction, with beforeCommit run
// between the call (which took the cursors) and COMMIT: tests hold commits
// up there.
func (s *Store) callInTx(ctx context.Context, conn *pgxpool.Conn, a *args, got *[]int32, last **int64) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := tx.QueryRow(ctx, commitCall, a.list()...).Scan(got, last); err != nil {
		return err
	}
	s.cfg.beforeCommit()
	if err := tx.Commit(ctx); err != nil {
		return &commitError{err}
	}
	return nil
}

// commitError is an error of COMMIT itself: the transaction may have been
// committed, so it is not tried again.
type commitError struct{ err error }

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// doubtful reports an error after which the call may have committed: the
// connection broke (or the call was cut short) once the call may have
// reached the server. An error the server sent means that it rolled back.
func doubtful(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return false
	}
	var atCommit *commitError
	return errors.As(err, &atCommit) || !pgconn.SafeToRetry(err)
}

// inDoubt is the error of a call that may have committed, with the
// process id of the server session that ran it.
type inDoubt struct {
	pid uint32
	err error
}

func (e *inDoubt) Error() string { return e.err.Error() }
func (e *inDoubt) Unwrap() error { return e.err }

// settleWait bounds how long notCommitted waits for the session of a call
// in doubt to end.
const settleWait = 10 * time.Second

// outcome is what settle found out about a call in doubt.
type outcome int

const (
	unknown      outcome = iota // it cannot tell
	committed                   // the group's new messages are stored
	notCommitted                // the call's session finished it and they are not
)

// settle finds out what became of the call in doubt that session pid ran.
// Committed: some of the group's new messages exist (the group is one
// transaction). Not committed: the session has finished the call (it is
// gone, or idle: its transaction ended) and none of them exists. That
// second proof rests on pid being the server session that ran the call,
// which is not so behind a connection pooler (s.pooled): there a missing
// message proves nothing, and settle reports unknown. With no new message
// in the group, or when the database cannot be asked, it reports unknown.
func (s *Store) settle(group []*groupcommit.Request, live []int, pid uint32) outcome {
	var ids, accounts, resources []string
	for _, i := range live {
		for _, m := range group[i].Batch.Messages {
			ids = append(ids, m.ID)
			accounts = append(accounts, m.Owner.Account)
			resources = append(resources, m.Owner.Resource)
		}
	}
	if len(ids) == 0 {
		return unknown
	}
	ctx, cancel := context.WithTimeout(s.ctx, settleWait)
	defer cancel()
	for !s.pooled.Load() {
		// A session of our role shows its state; NULL (hidden) counts
		// as busy.
		var busy bool
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE pid = $1 AND coalesce(state, '') <> 'idle')`, int32(pid)).Scan(&busy)
		if err != nil {
			return unknown
		}
		if !busy {
			break
		}
		select {
		case <-ctx.Done():
			return unknown
		case <-time.After(20 * time.Millisecond):
		}
	}
	// All of them, as the batches have them: one of them stored by
	// another writer meanwhile would have failed the call.
	var found int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, a, r)
		JOIN xmpptrack_messages m ON m.id = u.id AND m.account = u.a AND m.resource = u.r`,
		ids, accounts, resources).Scan(&found)
	switch {
	case err != nil:
		return unknown
	case found == len(ids):
		return committed
	case found > 0 || s.pooled.Load():
		return unknown
	}
	return notCommitted
}

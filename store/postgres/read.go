package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

const messageColumns = `n, id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq,
	state, settled, updated, (SELECT max(cursor) FROM xmpptrack_changes WHERE msg = xmpptrack_messages.n)`

func scanMessage(r pgx.Row) (int64, store.Message, error) {
	var (
		m        store.Message
		n        int64
		deadline *time.Time
		seq      *int64
		cursor   *int64
		state    int16
	)
	err := r.Scan(&n, &m.ID, &m.Owner.Account, &m.Owner.Resource, &m.To, &m.Room, &m.Thread, &m.Channel,
		&m.Raw, &m.Created, &deadline, &seq, &state, &m.Settled, &m.Updated, &cursor)
	if err != nil {
		return 0, m, err
	}
	if m.State, err = decodeState(state); err != nil {
		return 0, m, err
	}
	if deadline != nil {
		m.Deadline = *deadline
	}
	if seq != nil {
		if *seq < 0 || *seq > 1<<32-1 {
			return 0, m, fmt.Errorf("postgres: message %q has sequence number %d: %w", m.ID, *seq, store.ErrForeign)
		}
		m.Seq, m.Written = uint32(*seq), true
	}
	if cursor != nil {
		m.Cursor = *cursor
	}
	return n, m, nil
}

func decodeState(v int16) (tracking.MessageState, error) {
	if v < 0 || int(v) > int(tracking.Error) {
		return 0, fmt.Errorf("postgres: stored state %d: %w", v, store.ErrForeign)
	}
	return tracking.MessageState(v), nil
}

// Message implements store.Store.
func (s *Store) Message(ctx context.Context, id string) (rec store.Record, err error) {
	if s.isClosed() {
		return store.Record{}, store.ErrClosed
	}
	err = s.read(ctx, func() error {
		rec, err = s.message(ctx, id)
		return err
	})
	return rec, err
}

func (s *Store) message(ctx context.Context, id string) (store.Record, error) {
	// One snapshot for the message and its history.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return store.Record{}, fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(ctx)
	n, m, err := scanMessage(tx.QueryRow(ctx, `SELECT `+messageColumns+` FROM xmpptrack_messages WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("postgres: message %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("postgres: %w", err)
	}
	rec := store.Record{Message: m}
	rows, err := tx.Query(ctx, `SELECT cursor, state, settles, at, ev_from, stanza_id, condition, ev_text
		FROM xmpptrack_changes WHERE msg = $1 ORDER BY cursor`, n)
	if err != nil {
		return store.Record{}, fmt.Errorf("postgres: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c := store.Change{ID: m.ID, Owner: m.Owner, To: m.To, Room: m.Room, Channel: m.Channel}
		var st int16
		if err := rows.Scan(&c.Cursor, &st, &c.Settled, &c.At, &c.From, &c.StanzaID, &c.Condition, &c.Text); err != nil {
			return store.Record{}, fmt.Errorf("postgres: %w", err)
		}
		if c.State, err = decodeState(st); err != nil {
			return store.Record{}, err
		}
		rec.History = append(rec.History, c)
	}
	if err := rows.Err(); err != nil {
		return store.Record{}, fmt.Errorf("postgres: %w", err)
	}
	return rec, nil
}

const pendingChunk = 1000

// Pending implements store.Store, reading in chunks.
func (s *Store) Pending(ctx context.Context, owner store.Instance, fn func(store.Message) error) error {
	if s.isClosed() {
		return store.ErrClosed
	}
	if err := owner.Validate(); err != nil {
		return err
	}
	var after int64
	for {
		var chunk []store.Message
		var lastN int64
		err := s.read(ctx, func() error {
			chunk = chunk[:0]
			rows, err := s.pool.Query(ctx, `SELECT `+messageColumns+` FROM xmpptrack_messages
				WHERE account = $1 AND resource = $2 AND NOT settled AND n > $3 ORDER BY n LIMIT $4`,
				owner.Account, owner.Resource, after, pendingChunk)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				n, m, err := scanMessage(rows)
				if err != nil {
					return err
				}
				chunk = append(chunk, m)
				lastN = n
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		after = lastN
		for _, m := range chunk {
			if err := fn(m); err != nil {
				return err
			}
		}
		if len(chunk) < pendingChunk {
			return nil
		}
	}
}

// Session implements store.Store.
func (s *Store) Session(ctx context.Context, owner store.Instance) (store.Session, error) {
	if s.isClosed() {
		return store.Session{}, store.ErrClosed
	}
	if err := owner.Validate(); err != nil {
		return store.Session{}, err
	}
	ss := store.Session{Owner: owner}
	var max, in, out, acked int64
	err := s.read(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT jid, smid, location, max_s, inbound, outbound, acked, updated
			FROM xmpptrack_sessions WHERE account = $1 AND resource = $2`, owner.Account, owner.Resource).
			Scan(&ss.JID, &ss.ID, &ss.Location, &max, &in, &out, &acked, &ss.Updated)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Session{}, fmt.Errorf("postgres: session of %v: %w", owner, store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, fmt.Errorf("postgres: %w", err)
	}
	for _, v := range []int64{in, out, acked} {
		if v < 0 || v > 1<<32-1 {
			return store.Session{}, fmt.Errorf("postgres: session counter %d: %w", v, store.ErrForeign)
		}
	}
	ss.Max = time.Duration(max) * time.Second
	ss.Inbound, ss.Outbound, ss.Acked = uint32(in), uint32(out), uint32(acked)
	return ss, nil
}

// Changes implements store.Store.
func (s *Store) Changes(ctx context.Context, q store.FeedQuery) ([]store.Change, error) {
	if s.isClosed() {
		return nil, store.ErrClosed
	}
	s.startListener() // a follower: Wait comes next
	if err := q.Validate(); err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.WriteString(`SELECT c.cursor, m.id, c.state, c.settles, c.at, c.ev_from, c.stanza_id, c.condition, c.ev_text,
		m.account, m.resource, m.rcpt, m.room, m.channel
		FROM xmpptrack_changes c JOIN xmpptrack_messages m ON m.n = c.msg WHERE c.cursor > $1`)
	args := []any{q.After, q.Count()}
	if len(q.Channels) > 0 {
		args = append(args, q.Channels)
		fmt.Fprintf(&sb, ` AND m.channel = ANY($%d)`, len(args))
	}
	if q.Owner != (store.Instance{}) {
		args = append(args, q.Owner.Account, q.Owner.Resource)
		fmt.Fprintf(&sb, ` AND m.account = $%d AND m.resource = $%d`, len(args)-1, len(args))
	}
	sb.WriteString(` ORDER BY c.cursor LIMIT $2`)
	var out []store.Change
	err := s.read(ctx, func() error {
		out = out[:0]
		return s.changes(ctx, sb.String(), args, &out)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

func (s *Store) changes(ctx context.Context, query string, args []any, out *[]store.Change) error {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c store.Change
		var st int16
		if err := rows.Scan(&c.Cursor, &c.ID, &st, &c.Settled, &c.At, &c.From, &c.StanzaID, &c.Condition, &c.Text,
			&c.Owner.Account, &c.Owner.Resource, &c.To, &c.Room, &c.Channel); err != nil {
			return err
		}
		if c.State, err = decodeState(st); err != nil {
			return err
		}
		*out = append(*out, c)
	}
	return rows.Err()
}

// LastCursor implements store.Store.
func (s *Store) LastCursor(ctx context.Context) (int64, error) {
	if s.isClosed() {
		return 0, store.ErrClosed
	}
	s.startListener() // a follower: Wait comes next
	var last int64
	if err := s.read(ctx, func() error { return s.pool.QueryRow(ctx, `SELECT last FROM xmpptrack_feed`).Scan(&last) }); err != nil {
		return 0, fmt.Errorf("postgres: %w", err)
	}
	return last, nil
}

// Wait implements store.Store: it sleeps until a notification (or a commit
// through this Store) moves the feed. While the listener does not listen
// (it cannot connect, or LISTEN fails, or its connection broke), it looks
// at the feed every second (pollEvery): a follower then lags other
// instances' commits by up to that, and never sleeps through them.
func (s *Store) Wait(ctx context.Context, after int64) error {
	// Woken by the listener once it listens, if not by a notification.
	s.startListener()
	for {
		s.mu.Lock()
		ch, heard := s.notify, s.heard
		s.mu.Unlock()
		last, err := s.LastCursor(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.isClosed() {
				return store.ErrClosed
			}
			return err
		}
		if last > after {
			return nil
		}
		var poll <-chan time.Time
		stop := func() bool { return false }
		if !heard {
			// No notification may come: look again soon.
			t := time.NewTimer(pollEvery)
			poll, stop = t.C, t.Stop
		}
		select {
		case <-ch:
		case <-poll:
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-s.ctx.Done():
			stop()
			return store.ErrClosed
		}
		stop()
	}
}

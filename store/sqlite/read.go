package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
)

// messageColumns are the columns scanMessage reads. A message's cursor is
// that of its latest change, or of its creation (n) if it has none.
const messageColumns = `n, id, account, resource, rcpt, room, thread, channel, raw, created, deadline, seq,
	state, settled, updated, coalesce((SELECT max(cursor) FROM changes WHERE message = messages.n), n)`

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(...any) error }

// scanMessage reads messageColumns.
func scanMessage(sc scanner) (int64, store.Message, error) {
	var (
		m                                store.Message
		n, created, deadline, state, upd int64
		seq, cursor                      sql.NullInt64
		room, settled                    bool
	)
	err := sc.Scan(&n, &m.ID, &m.Owner.Account, &m.Owner.Resource, &m.To, &room, &m.Thread, &m.Channel,
		&m.Raw, &created, &deadline, &seq, &state, &settled, &upd, &cursor)
	if err != nil {
		return 0, m, err
	}
	return n, m, fillMessage(&m, room, settled, created, deadline, state, upd, seq, cursor)
}

// fillMessage decodes the stored columns of a message.
func fillMessage(m *store.Message, room, settled bool, created, deadline, state, upd int64, seq, cursor sql.NullInt64) error {
	var err error
	if m.State, err = decodeState(state); err != nil {
		return err
	}
	if seq.Valid {
		if m.Seq, err = decodeSeq(seq.Int64); err != nil {
			return err
		}
		m.Written = true
	}
	m.Room, m.Settled = room, settled
	m.Created, m.Deadline, m.Updated = fromMicros(created), fromMicros(deadline), fromMicros(upd)
	m.Cursor = cursor.Int64
	return nil
}

// Message implements store.Store.
func (s *Store) Message(ctx context.Context, id string) (store.Record, error) {
	if s.isClosed() {
		return store.Record{}, store.ErrClosed
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.Record{}, readErr(err)
	}
	defer tx.Rollback()
	n, m, err := scanMessage(tx.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlite: message %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, readErr(err)
	}
	rec := store.Record{Message: m}
	rows, err := tx.QueryContext(ctx, sqlHistory, n)
	if err != nil {
		return store.Record{}, readErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		c := store.Change{ID: m.ID, Owner: m.Owner, To: m.To, Room: m.Room, Channel: m.Channel}
		var state, at int64
		var settles sql.NullBool
		var ev []byte
		if err := rows.Scan(&c.Cursor, &state, &settles, &at, &ev); err != nil {
			return store.Record{}, readErr(err)
		}
		if err := fillChange(&c, state, settles, at, ev); err != nil {
			return store.Record{}, err
		}
		rec.History = append(rec.History, c)
	}
	if err := rows.Err(); err != nil {
		return store.Record{}, readErr(err)
	}
	return rec, nil
}

// sqlHistory is the history of message n: its creation (settles NULL),
// then its changes.
const sqlHistory = `SELECT n, first, NULL, created, NULL FROM messages WHERE n = ?1
	UNION ALL SELECT cursor, state, settles, at, evidence FROM changes WHERE message = ?1
	ORDER BY 1`

// fillChange decodes the stored columns of a change, or of a message's
// creation: settles is NULL for one, which settles if its state is final.
func fillChange(c *store.Change, state int64, settles sql.NullBool, at int64, ev []byte) error {
	var err error
	if c.State, err = decodeState(state); err != nil {
		return err
	}
	c.Settled = settles.Bool
	if !settles.Valid {
		c.Settled = store.SettledState(c.State)
	}
	if c.Evidence, err = decodeEvidence(ev); err != nil {
		return err
	}
	c.At = fromMicros(at)
	return nil
}

// sqlPending reads the unsettled messages of an owner after n ?3: the
// listed ones from the pending index, and the unlisted ones, which are
// numbered above listing.upto, from that range of the table (see listing
// in commit.go; a listing table without its row, in a damaged file, reads
// as upto 0: the whole table).
const sqlPending = `SELECT ` + messageColumns + ` FROM messages
		WHERE account = ?1 AND resource = ?2 AND settled = 0 AND listed = 1 AND n > ?3
	UNION ALL SELECT ` + messageColumns + ` FROM messages
		WHERE n > max(?3, coalesce((SELECT upto FROM listing), 0)) AND settled = 0 AND listed = 0 AND account = ?1 AND resource = ?2
	ORDER BY n LIMIT ?4`

// pendingChunk is how many messages Pending reads per query.
const pendingChunk = 1000

// Pending implements store.Store. It reads in chunks, so that fn may take
// its time without holding a read transaction open.
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
		rows, err := s.r.QueryContext(ctx, sqlPending, owner.Account, owner.Resource, after, pendingChunk)
		if err != nil {
			return readErr(err)
		}
		for rows.Next() {
			n, m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return readErr(err)
			}
			chunk = append(chunk, m)
			after = n
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return readErr(err)
		}
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
	var max, in, out, acked, upd int64
	err := s.r.QueryRowContext(ctx, `SELECT jid, smid, location, max, inbound, outbound, acked, updated
		FROM sessions WHERE account = ? AND resource = ?`, owner.Account, owner.Resource).
		Scan(&ss.JID, &ss.ID, &ss.Location, &max, &in, &out, &acked, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Session{}, fmt.Errorf("sqlite: session of %v: %w", owner, store.ErrNotFound)
	}
	if err != nil {
		return store.Session{}, readErr(err)
	}
	for _, v := range []int64{in, out, acked} {
		if _, err := decodeSeq(v); err != nil {
			return store.Session{}, err
		}
	}
	ss.Max = time.Duration(max) * time.Second
	ss.Inbound, ss.Outbound, ss.Acked = uint32(in), uint32(out), uint32(acked)
	ss.Updated = fromMicros(upd)
	return ss, nil
}

// Changes implements store.Store.
func (s *Store) Changes(ctx context.Context, q store.FeedQuery) ([]store.Change, error) {
	if s.isClosed() {
		return nil, store.ErrClosed
	}
	if err := q.Validate(); err != nil {
		return nil, err
	}
	// The feed is the messages' creations and the changes, merged in
	// cursor order: SQLite reads both by cursor (their row ids) and stops
	// at the limit.
	args := []any{q.After}
	var filter strings.Builder
	if len(q.Channels) > 0 {
		filter.WriteString(` AND m.channel IN (`)
		for i, ch := range q.Channels {
			if i > 0 {
				filter.WriteString(`, `)
			}
			args = append(args, ch)
			fmt.Fprintf(&filter, `?%d`, len(args))
		}
		filter.WriteString(`)`)
	}
	if q.Owner != (store.Instance{}) {
		args = append(args, q.Owner.Account, q.Owner.Resource)
		fmt.Fprintf(&filter, ` AND m.account = ?%d AND m.resource = ?%d`, len(args)-1, len(args))
	}
	args = append(args, q.Count())
	query := `SELECT m.n, m.id, m.first, NULL, m.created, NULL, m.account, m.resource, m.rcpt, m.room, m.channel
		FROM messages m WHERE m.n > ?1` + filter.String() + `
		UNION ALL
		SELECT c.cursor, m.id, c.state, c.settles, c.at, c.evidence, m.account, m.resource, m.rcpt, m.room, m.channel
		FROM changes c JOIN messages m ON m.n = c.message WHERE c.cursor > ?1` + filter.String() + `
		ORDER BY 1 LIMIT ?` + fmt.Sprint(len(args))
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, readErr(err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		var c store.Change
		var state, at int64
		var settles sql.NullBool
		var ev []byte
		if err := rows.Scan(&c.Cursor, &c.ID, &state, &settles, &at, &ev, &c.Owner.Account, &c.Owner.Resource,
			&c.To, &c.Room, &c.Channel); err != nil {
			return nil, readErr(err)
		}
		if err := fillChange(&c, state, settles, at, ev); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr(err)
	}
	return out, nil
}

// LastCursor implements store.Store: the last cursor ever assigned, which
// stays in the table even when its change was pruned (see pruneChunk).
func (s *Store) LastCursor(ctx context.Context) (int64, error) {
	if s.isClosed() {
		return 0, store.ErrClosed
	}
	var c int64
	err := s.r.QueryRowContext(ctx, `SELECT `+sqlLastCursor).Scan(&c)
	if err != nil {
		return 0, readErr(err)
	}
	return c, nil
}

// pollEvery is how often Wait looks for commits of other handles.
const pollEvery = 25 * time.Millisecond

// Wait implements store.Store.
func (s *Store) Wait(ctx context.Context, after int64) error {
	var tick *time.Ticker
	for {
		s.mu.Lock()
		ch := s.notify
		s.mu.Unlock()
		last, err := s.LastCursor(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if last > after {
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(pollEvery)
			defer tick.Stop()
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return store.ErrClosed
		}
	}
}

// readErr wraps a driver error.
func readErr(err error) error {
	if errors.Is(err, store.ErrForeign) {
		return err
	}
	return fmt.Errorf("sqlite: %w", err)
}

func nullInt(v int64) sql.NullInt64 { return sql.NullInt64{Int64: v, Valid: true} }

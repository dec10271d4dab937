package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/tracking"
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
		// A broken connection before COMMIT was sent: the transaction is
		// gone, try again on fresh connections.
		var atCommit *commitError
		if transient(err) && !errors.As(err, &atCommit) && attempt < 2 {
			s.pool.Reset()
			continue
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

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
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

// row is a locked message.
type row struct {
	n       int64
	state   tracking.MessageState
	settled bool
	updated time.Time
	dirty   bool
}

// feedRow is a change to insert once cursors are known.
type feedRow struct {
	res     result
	n       int64
	state   tracking.MessageState
	settles bool
	at      time.Time
	ev      store.Evidence
}

// tryGroup runs one transaction for the live batches of group. It returns
// the ids that exist already (with errConflict), or the cursors to hand
// back.
func (s *Store) tryGroup(group []*groupcommit.Request, live []int) ([]result, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(ctx)
	now := time.Now()

	// 1. New messages, in one statement.
	var (
		ids, accounts, resources, rcpts, threads, channels []string
		rooms, settled                                     []bool
		raws                                               [][]byte
		created                                            []time.Time
		deadlines                                          []*time.Time
		states                                             []int16
	)
	for _, i := range live {
		for j := range group[i].Batch.Messages {
			m := &group[i].Batch.Messages[j]
			if m.Created.IsZero() {
				m.Created = now
			}
			st := store.SettledState(m.State)
			raw := m.Raw
			if st {
				raw = nil
			}
			var dl *time.Time
			if !m.Deadline.IsZero() {
				d := m.Deadline
				dl = &d
			}
			ids = append(ids, m.ID)
			accounts = append(accounts, m.Owner.Account)
			resources = append(resources, m.Owner.Resource)
			rcpts = append(rcpts, m.To)
			rooms = append(rooms, m.Room)
			threads = append(threads, m.Thread)
			channels = append(channels, m.Channel)
			raws = append(raws, raw)
			created = append(created, m.Created)
			deadlines = append(deadlines, dl)
			states = append(states, int16(m.State))
			settled = append(settled, st)
		}
	}
	newN := map[string]int64{}
	if len(ids) > 0 {
		rows, err := tx.Query(ctx, `INSERT INTO xmpptrack_messages
			(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, state, settled, updated)
			SELECT u.id, u.account, u.resource, u.rcpt, u.room, u.thread, u.channel, u.raw, u.created, u.deadline,
				u.state, u.settled, u.created
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[],
				$8::bytea[], $9::timestamptz[], $10::timestamptz[], $11::int2[], $12::bool[])
				WITH ORDINALITY AS u(id, account, resource, rcpt, room, thread, channel, raw, created, deadline, state, settled, o)
			ORDER BY u.o
			ON CONFLICT (id) DO NOTHING RETURNING id, n`,
			ids, accounts, resources, rcpts, rooms, threads, channels, raws, created, deadlines, states, settled)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var id string
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return nil, nil, err
			}
			newN[id] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
		if len(newN) < len(ids) {
			conflicts := map[string]bool{}
			for _, id := range ids {
				if _, ok := newN[id]; !ok {
					conflicts[id] = true
				}
			}
			return nil, conflicts, errConflict
		}
	}

	// 2. Lock the messages that changes and sequence numbers are about,
	// in id order (so that concurrent instances cannot deadlock).
	var lockIDs []string
	for _, i := range live {
		for _, c := range group[i].Batch.Changes {
			lockIDs = append(lockIDs, c.ID)
		}
		for _, w := range group[i].Batch.Written {
			lockIDs = append(lockIDs, w.ID)
		}
	}
	slices.Sort(lockIDs)
	lockIDs = slices.Compact(lockIDs)
	locked := map[string]*row{}
	if len(lockIDs) > 0 {
		rows, err := tx.Query(ctx, `SELECT id, n, state, settled, updated FROM xmpptrack_messages
			WHERE id = ANY($1) ORDER BY id FOR UPDATE`, lockIDs)
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var id string
			var r row
			var st int16
			if err := rows.Scan(&id, &r.n, &st, &r.settled, &r.updated); err != nil {
				rows.Close()
				return nil, nil, err
			}
			if st < 0 || int(st) > int(tracking.Error) {
				rows.Close()
				return nil, nil, fmt.Errorf("message %q has state %d: %w", id, st, store.ErrForeign)
			}
			r.state = tracking.MessageState(st)
			locked[id] = &r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
	}

	// 3. Apply the changes in order; collect the feed rows.
	var feed []feedRow
	for _, i := range live {
		b := group[i].Batch
		for j, m := range b.Messages {
			feed = append(feed, feedRow{res: result{batch: i, msg: j, change: -1}, n: newN[m.ID], state: m.State,
				settles: store.SettledState(m.State), at: m.Created})
		}
		for j := range b.Changes {
			c := &b.Changes[j]
			if c.At.IsZero() {
				c.At = now
			}
			r := locked[c.ID]
			if r == nil {
				continue
			}
			to, settles, changed := store.Next(r.state, r.settled, c.State)
			if !changed {
				continue
			}
			if to != r.state {
				feed = append(feed, feedRow{res: result{batch: i, change: j}, n: r.n, state: to, settles: settles, at: c.At, ev: c.Evidence})
			}
			r.state, r.settled, r.updated, r.dirty = to, settles, c.At, true
		}
	}
	var dn []int64
	var dstate []int16
	var dsettled []bool
	var dupdated []time.Time
	for _, r := range locked {
		if r.dirty {
			dn = append(dn, r.n)
			dstate = append(dstate, int16(r.state))
			dsettled = append(dsettled, r.settled)
			dupdated = append(dupdated, r.updated)
		}
	}
	if len(dn) > 0 {
		_, err := tx.Exec(ctx, `UPDATE xmpptrack_messages m SET state = u.state, settled = u.settled, updated = u.updated,
			raw = CASE WHEN u.settled THEN NULL ELSE m.raw END
			FROM unnest($1::int8[], $2::int2[], $3::bool[], $4::timestamptz[]) AS u(n, state, settled, updated)
			WHERE m.n = u.n`, dn, dstate, dsettled, dupdated)
		if err != nil {
			return nil, nil, err
		}
	}

	// 4. Sequence numbers and sessions.
	var wids []string
	var wseqs []int64
	for _, i := range live {
		for _, w := range group[i].Batch.Written {
			wids = append(wids, w.ID)
			wseqs = append(wseqs, int64(w.Seq))
		}
	}
	if len(wids) > 0 {
		_, err := tx.Exec(ctx, `UPDATE xmpptrack_messages m SET seq = u.seq
			FROM unnest($1::text[], $2::int8[]) AS u(id, seq) WHERE m.id = u.id`, wids, wseqs)
		if err != nil {
			return nil, nil, err
		}
	}
	var sess []store.Session
	for _, i := range live {
		sess = append(sess, group[i].Batch.Sessions...)
	}
	for _, ss := range sess {
		if ss.Updated.IsZero() {
			ss.Updated = now
		}
		_, err := tx.Exec(ctx, `INSERT INTO xmpptrack_sessions
			(account, resource, jid, smid, location, max_s, inbound, outbound, acked, updated)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (account, resource) DO UPDATE SET jid = EXCLUDED.jid, smid = EXCLUDED.smid,
			location = EXCLUDED.location, max_s = EXCLUDED.max_s, inbound = EXCLUDED.inbound,
			outbound = EXCLUDED.outbound, acked = EXCLUDED.acked, updated = EXCLUDED.updated`,
			ss.Owner.Account, ss.Owner.Resource, ss.JID, ss.ID, ss.Location, int64(ss.Max/time.Second),
			int64(ss.Inbound), int64(ss.Outbound), int64(ss.Acked), ss.Updated)
		if err != nil {
			return nil, nil, err
		}
	}

	// 5. Cursors, last: the counter row stays locked until COMMIT, so that
	// cursors become visible in the order they were handed out.
	var out []result
	if len(feed) > 0 {
		var last int64
		if err := tx.QueryRow(ctx, `UPDATE xmpptrack_feed SET last = last + $1 RETURNING last`, len(feed)).Scan(&last); err != nil {
			return nil, nil, err
		}
		base := last - int64(len(feed)) + 1
		cur := make([]int64, len(feed))
		msg := make([]int64, len(feed))
		st := make([]int16, len(feed))
		sets := make([]bool, len(feed))
		at := make([]time.Time, len(feed))
		from := make([]string, len(feed))
		sid := make([]string, len(feed))
		cond := make([]string, len(feed))
		text := make([]string, len(feed))
		for k, f := range feed {
			cur[k], msg[k], st[k], sets[k], at[k] = base+int64(k), f.n, int16(f.state), f.settles, f.at
			from[k], sid[k], cond[k], text[k] = f.ev.From, f.ev.StanzaID, f.ev.Condition, f.ev.Text
			f.res.cursor = base + int64(k)
			out = append(out, f.res)
		}
		_, err := tx.Exec(ctx, `INSERT INTO xmpptrack_changes (cursor, msg, state, settles, at, ev_from, stanza_id, condition, ev_text)
			SELECT * FROM unnest($1::int8[], $2::int8[], $3::int2[], $4::bool[], $5::timestamptz[],
				$6::text[], $7::text[], $8::text[], $9::text[])`, cur, msg, st, sets, at, from, sid, cond, text)
		if err != nil {
			return nil, nil, err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, fmt.Sprint(last)); err != nil {
			return nil, nil, err
		}
	}
	if s.cfg.beforeCommit != nil {
		s.cfg.beforeCommit()
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, &commitError{err}
	}
	return out, nil, nil
}

// commitError is an error of COMMIT itself: the transaction may have been
// committed, so it is not tried again.
type commitError struct{ err error }

func (e *commitError) Error() string { return e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

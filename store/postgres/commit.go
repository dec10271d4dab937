package postgres

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// Commit implements store.Store: batches of concurrent callers are written
// in one transaction by the committer goroutine (see package groupcommit).
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if s.suspended.Load() > 0 {
		return errLeaseSuspended
	}
	return s.group.Commit(ctx, b)
}

// errConflict: some new message ids exist (found by the insert).
var errConflict = errors.New("conflict")

// commitGroup writes the batches in one transaction. A batch whose new
// message exists fails alone: the transaction is tried again without it.
// Deadlocks and serialization failures are retried too.
func (s *Store) commitGroup(group []*groupcommit.Request) {
	errs, blockedBy := s.duplicates(group)
	var out []result
	stored := false // committed, though the cursors are unknown
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
		try := s.tryGroup
		if s.cfg.try != nil {
			try = s.cfg.try
		}
		out, conflicts, err = try(group, live)
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
		var answer *answerError
		var doubt *inDoubt
		if errors.As(err, &answer) {
			err = fmt.Errorf("%w: %w", store.ErrCursorsUnknown, err)
			stored = true
		} else if errors.As(err, &doubt) {
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
				stored = true
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
	// blocked: batch i was refused for an id of a batch that failed.
	blocked := func(i int) bool { k := blockedBy[i]; return k >= 0 && errs[k] != nil }
	ok := false
	for i := range group {
		ok = ok || (!blocked(i) && errs[i] == nil)
	}
	// This Store's waiters are woken before the Commit calls return, so
	// that a Commit that returned has woken them.
	if ok || stored {
		s.wake()
	}
	var again []*groupcommit.Request
	for i, r := range group {
		if blocked(i) {
			again = append(again, r)
			continue
		}
		r.Answer(errs[i])
	}
	if len(again) > 0 {
		s.commitGroup(again)
	}
}

// duplicates fails each batch of group that holds a new message id that
// an earlier batch of the group or itself holds too (those the database
// holds fail in the call).
//
// blockedBy[i] is the earlier batch whose id failed batch i (-1: none, or
// itself): if that batch fails in the end, batch i is written again on its
// own (the id it met was never stored).
func (s *Store) duplicates(group []*groupcommit.Request) (errs []error, blockedBy []int) {
	errs = make([]error, len(group))
	blockedBy = make([]int, len(group))
	// seen maps the ids of the batches taken so far to their batch (plus
	// one); the committer reuses it.
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	seen := s.seen
	defer func() {
		if len(seen) > maxKeptRows {
			s.seen = nil // clear would keep its size, and cost as much each time
		} else {
			clear(seen)
		}
	}()
	for i, r := range group {
		blockedBy[i] = -1
		for _, m := range r.Batch.Messages {
			if k := seen[m.ID]; k != 0 {
				errs[i] = fmt.Errorf("postgres: message %q: %w", m.ID, store.ErrExists)
				if k != i+1 {
					blockedBy[i] = k - 1
				}
				break
			}
			seen[m.ID] = i + 1
		}
		if errs[i] != nil {
			for _, m := range r.Batch.Messages {
				if seen[m.ID] == i+1 {
					delete(seen, m.ID)
				}
			}
		}
	}
	return errs, blockedBy
}

// unsent reports an error after which the group was certainly not
// committed, and which fresh connections may not have.
func unsent(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return transient(err)
	}
	var prep *prepareError
	if errors.As(err, &prep) {
		return true // a broken connection: the call did not run
	}
	var atCommit *commitError
	return pgconn.SafeToRetry(err) && !errors.As(err, &atCommit)
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

// graph is store.Next as a table for xmpptrack_commit:
// graph[from*numStates+req] is -1 when the change is a no-op, else the
// state reached, plus 16 if the message settles with it.
var graph = func() []int16 {
	g := make([]int16, numStates*numStates)
	for from := range numStates {
		for req := range numStates {
			to, settles, changed := store.Next(tracking.MessageState(from), false, tracking.MessageState(req))
			switch {
			case !changed:
				g[from*numStates+req] = -1
			case settles:
				g[from*numStates+req] = int16(to) + 16
			default:
				g[from*numStates+req] = int16(to)
			}
		}
	}
	return g
}()

const numStates = int(tracking.Error) + 1

// commitCall is the statement of a group commit: one round trip. It is
// prepared on each connection as commitStmt.
const commitCall = `SELECT keys, last FROM xmpptrack_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
	$14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36)`

const commitStmt = "xmpptrack_commit"

// binaryFormat: every parameter and result column in binary.
var binaryFormat = []int16{1}

// args are the arguments of xmpptrack_commit (see the schema): columns of
// the new messages, the ids to lock, the changes and sequence numbers as
// positions in the ids to lock, the sessions. Each creation event and
// change has a key, its rank in the feed: the function returns the keys of
// the feed rows it wrote, in cursor order. The committer reuses one args
// (and its params) from one group commit to the next.
type args struct {
	mID, mAccount, mResource, mRcpt, mThread, mChannel []string
	mRoom, mSettled                                    []bool
	mRaw                                               [][]byte
	mCreated                                           []time.Time
	mDeadline                                          []time.Time // zero: none
	mState                                             []int16
	mKey                                               []int32

	// lID is sorted and holds each id once: with an id twice, the
	// function's UPDATE would get two rows for one message, and the plan
	// would pick the one it keeps.
	lID []string

	cLock                     []int32
	cState                    []int16
	cAt                       []time.Time
	cFrom, cSID, cCond, cText []string
	cKey                      []int32
	wLock                     []int32
	wSeq                      []int64
	sAccount, sResource, sJID []string
	sSMID, sLocation          []string
	sMax, sIn, sOut, sAcked   []int64
	sUpdated                  []time.Time

	keys []result               // what each key stands for
	last map[store.Instance]int // sessions: the last one of each owner
	sess []store.Session
	p    params
	got  []int32 // the keys the call returned
}

// reset empties a, dropping its references to the batches.
func (a *args) reset() {
	for _, v := range []*[]string{&a.mID, &a.mAccount, &a.mResource, &a.mRcpt, &a.mThread, &a.mChannel, &a.lID,
		&a.cFrom, &a.cSID, &a.cCond, &a.cText, &a.sAccount, &a.sResource, &a.sJID, &a.sSMID, &a.sLocation} {
		clear(*v)
		*v = (*v)[:0]
	}
	clear(a.mRaw)
	clear(a.sess)
	a.mRaw, a.sess = a.mRaw[:0], a.sess[:0]
	a.mRoom, a.mSettled = a.mRoom[:0], a.mSettled[:0]
	a.mCreated, a.mDeadline, a.cAt, a.sUpdated = a.mCreated[:0], a.mDeadline[:0], a.cAt[:0], a.sUpdated[:0]
	a.mState, a.cState = a.mState[:0], a.cState[:0]
	a.mKey, a.cLock, a.cKey, a.wLock = a.mKey[:0], a.cLock[:0], a.cKey[:0], a.wLock[:0]
	a.wSeq, a.sMax, a.sIn, a.sOut, a.sAcked = a.wSeq[:0], a.sMax[:0], a.sIn[:0], a.sOut[:0], a.sAcked[:0]
	a.keys = a.keys[:0]
	clear(a.last)
	a.p.reset()
	a.got = a.got[:0]
}

// maxKept bounds what the committer keeps between group commits: after a
// group of more rows or bytes its args start afresh (a burst of large
// stanzas would otherwise hold their size until Close).
const (
	maxKeptRows  = 4096
	maxKeptBytes = 1 << 20
)

// release empties a after a call, keeping its buffers unless they grew
// beyond maxKept.
func (a *args) release() {
	if len(a.keys) > maxKeptRows || len(a.lID) > maxKeptRows || len(a.sess) > maxKeptRows || cap(a.p.buf) > maxKeptBytes {
		*a = args{}
		return
	}
	a.reset()
}

// encode encodes the arguments, in the function's order.
func (a *args) encode() [][]byte {
	p := &a.p
	p.reset()
	p.int2s(graph)
	p.int4(int32(numStates))
	p.texts(a.mID)
	p.texts(a.mAccount)
	p.texts(a.mResource)
	p.texts(a.mRcpt)
	p.bools(a.mRoom)
	p.texts(a.mThread)
	p.texts(a.mChannel)
	p.byteas(a.mRaw)
	p.times(a.mCreated, false)
	p.times(a.mDeadline, true)
	p.int2s(a.mState)
	p.bools(a.mSettled)
	p.int4s(a.mKey)
	p.texts(a.lID)
	p.int4s(a.cLock)
	p.int2s(a.cState)
	p.times(a.cAt, false)
	p.texts(a.cFrom)
	p.texts(a.cSID)
	p.texts(a.cCond)
	p.texts(a.cText)
	p.int4s(a.cKey)
	p.int4s(a.wLock)
	p.int8s(a.wSeq)
	p.texts(a.sAccount)
	p.texts(a.sResource)
	p.texts(a.sJID)
	p.texts(a.sSMID)
	p.texts(a.sLocation)
	p.int8s(a.sMax)
	p.int8s(a.sIn)
	p.int8s(a.sOut)
	p.int8s(a.sAcked)
	p.times(a.sUpdated, false)
	return p.values()
}

// build fills a (emptied first) with the arguments for the live batches
// of group; a.keys says what each key stands for.
func (a *args) build(group []*groupcommit.Request, live []int, now time.Time) {
	a.reset()
	key := func(r result) int32 {
		a.keys = append(a.keys, r)
		return int32(len(a.keys) - 1)
	}
	for _, i := range live {
		b := group[i].Batch
		for j := range b.Messages {
			m := &b.Messages[j]
			if m.Created.IsZero() {
				m.Created = now
			}
			st := store.SettledState(m.State)
			raw := m.Raw
			if st {
				raw = nil
			}
			a.mID = append(a.mID, m.ID)
			a.mAccount = append(a.mAccount, m.Owner.Account)
			a.mResource = append(a.mResource, m.Owner.Resource)
			a.mRcpt = append(a.mRcpt, m.To)
			a.mRoom = append(a.mRoom, m.Room)
			a.mThread = append(a.mThread, m.Thread)
			a.mChannel = append(a.mChannel, m.Channel)
			a.mRaw = append(a.mRaw, raw)
			a.mCreated = append(a.mCreated, m.Created)
			a.mDeadline = append(a.mDeadline, m.Deadline)
			a.mState = append(a.mState, int16(m.State))
			a.mSettled = append(a.mSettled, st)
			a.mKey = append(a.mKey, key(result{batch: i, msg: j, change: -1}))
		}
		for j := range b.Changes {
			a.lID = append(a.lID, b.Changes[j].ID)
		}
		for _, w := range b.Written {
			a.lID = append(a.lID, w.ID)
		}
	}
	slices.Sort(a.lID)
	a.lID = slices.Compact(a.lID)
	pos := func(id string) int32 {
		k, _ := slices.BinarySearch(a.lID, id)
		return int32(k + 1)
	}
	// Sessions: the last one of each owner.
	if a.last == nil {
		a.last = map[store.Instance]int{}
	}
	for _, i := range live {
		b := group[i].Batch
		for j := range b.Changes {
			c := &b.Changes[j]
			if c.At.IsZero() {
				c.At = now
			}
			a.cLock = append(a.cLock, pos(c.ID))
			a.cState = append(a.cState, int16(c.State))
			a.cAt = append(a.cAt, c.At)
			a.cFrom = append(a.cFrom, c.From)
			a.cSID = append(a.cSID, c.StanzaID)
			a.cCond = append(a.cCond, c.Condition)
			a.cText = append(a.cText, c.Text)
			a.cKey = append(a.cKey, key(result{batch: i, change: j}))
		}
		for _, w := range b.Written {
			a.wLock = append(a.wLock, pos(w.ID))
			a.wSeq = append(a.wSeq, int64(w.Seq))
		}
		for _, ss := range b.Sessions {
			if k, ok := a.last[ss.Owner]; ok {
				a.sess[k] = ss
			} else {
				a.last[ss.Owner] = len(a.sess)
				a.sess = append(a.sess, ss)
			}
		}
	}
	for _, ss := range a.sess {
		if ss.Updated.IsZero() {
			ss.Updated = now
		}
		a.sAccount = append(a.sAccount, ss.Owner.Account)
		a.sResource = append(a.sResource, ss.Owner.Resource)
		a.sJID = append(a.sJID, ss.JID)
		a.sSMID = append(a.sSMID, ss.ID)
		a.sLocation = append(a.sLocation, ss.Location)
		a.sMax = append(a.sMax, int64(ss.Max/time.Second))
		a.sIn = append(a.sIn, int64(ss.Inbound))
		a.sOut = append(a.sOut, int64(ss.Outbound))
		a.sAcked = append(a.sAcked, int64(ss.Acked))
		a.sUpdated = append(a.sUpdated, ss.Updated)
	}
}

// tryGroup writes the live batches of group with one call of
// xmpptrack_commit, a transaction of its own (one round trip). It returns
// the ids that exist already (with errConflict), or the cursors to hand
// back. Only the committer calls it: it uses the committer's args.
func (s *Store) tryGroup(group []*groupcommit.Request, live []int) ([]result, map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := &s.args
	defer a.release()
	a.build(group, live, time.Now())
	vals := a.encode()
	var last int64
	var some bool
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	pid := conn.Conn().PgConn().PID()
	if s.cfg.beforeCommit == nil {
		last, some, err = s.exec(ctx, conn.Conn(), vals, false)
		if errors.Is(err, errResult) {
			// The server answered without an error: it committed.
			err = &answerError{err}
		}
	} else {
		last, some, err = s.callInTx(ctx, conn, vals)
	}
	conn.Release()
	if err != nil && doubtful(err) {
		return nil, nil, &inDoubt{pid: pid, err: err}
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch pe.Code {
			case "XT409":
				var ids []string
				if json.Unmarshal([]byte(pe.Detail), &ids) != nil || len(ids) == 0 {
					return nil, nil, err
				}
				conflicts := map[string]bool{}
				for _, id := range ids {
					conflicts[id] = true
				}
				return nil, conflicts, errConflict
			case "XT422":
				return nil, nil, fmt.Errorf("%s: %w", pe.Message, store.ErrForeign)
			}
		}
		return nil, nil, err
	}
	var out []result
	if len(a.got) > 0 && some {
		base := last - int64(len(a.got)) + 1
		out = make([]result, 0, len(a.got))
		for k, key := range a.got {
			if key < 0 || int(key) >= len(a.keys) {
				return nil, nil, &answerError{fmt.Errorf("%w: key %d of %d", errResult, key, len(a.keys))}
			}
			r := a.keys[key]
			r.cursor = base + int64(k)
			out = append(out, r)
		}
	}
	return out, nil, nil
}

// exec runs xmpptrack_commit on c with the encoded arguments vals: as the
// statement prepared on c, unless the DSN asks pgx not to cache statements
// (default_query_exec_mode, for a pooler that moves a client between
// server sessions), then as an unnamed statement of its own, parsed again
// at each call. A prepared statement the server no longer has (DISCARD
// ALL, such a pooler) or whose plan went stale fails before it runs: it is
// prepared again and the call made once more (not in a transaction, which
// the error aborted).
func (s *Store) exec(ctx context.Context, c *pgx.Conn, vals [][]byte, inTx bool) (int64, bool, error) {
	a := &s.args
	if s.connCfg.DefaultQueryExecMode != pgx.QueryExecModeCacheStatement {
		return a.read(c.PgConn().ExecParams(ctx, commitCall, vals, a.p.oids, binaryFormat, binaryFormat))
	}
	for attempt := 0; ; attempt++ {
		sd, err := c.Prepare(ctx, commitStmt, commitCall)
		if err != nil {
			return 0, false, &prepareError{err}
		}
		last, some, err := a.read(c.PgConn().ExecStatement(ctx, sd, vals, binaryFormat, binaryFormat))
		if attempt == 0 && staleStatement(err) && !inTx {
			if c.Deallocate(ctx, commitStmt) == nil {
				continue
			}
		}
		return last, some, err
	}
}

// staleStatement reports an error of a prepared statement that the server
// does not have (26000) or whose result type changed (0A000): it did not
// run.
func staleStatement(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "26000" ||
		pe.Code == "0A000" && strings.Contains(pe.Message, "cached plan must not change result type"))
}

// read reads the answer of xmpptrack_commit: it returns the last cursor
// taken (some: any), and leaves the keys of the feed rows written in a.got.
func (a *args) read(rr *pgconn.ResultReader) (last int64, some bool, err error) {
	rows := 0
	for rr.NextRow() {
		rows++
		v := rr.Values()
		switch {
		case len(v) != 2:
			err = fmt.Errorf("%w: %d columns", errResult, len(v))
		case v[1] != nil && len(v[1]) != 8:
			err = fmt.Errorf("%w: last of %d bytes", errResult, len(v[1]))
		default:
			var kerr error
			if a.got, kerr = int4Array(a.got[:0], v[0]); kerr != nil {
				err = kerr
			} else if v[1] != nil {
				last, some = int64(binary.BigEndian.Uint64(v[1])), true
			}
		}
	}
	if _, cerr := rr.Close(); cerr != nil {
		return 0, false, cerr
	}
	if err == nil && rows != 1 {
		err = fmt.Errorf("%w: %d rows", errResult, rows)
	}
	return last, some, err
}

// callInTx is the call in an explicit transaction, with beforeCommit run
// between the call (which took the cursors) and COMMIT: tests hold commits
// up there.
func (s *Store) callInTx(ctx context.Context, conn *pgxpool.Conn, vals [][]byte) (int64, bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback(ctx)
	last, some, err := s.exec(ctx, conn.Conn(), vals, true) // an error aborted the transaction: no retry
	if err != nil {
		return 0, false, err
	}
	s.cfg.beforeCommit()
	if err := tx.Commit(ctx); err != nil {
		return 0, false, &commitError{err}
	}
	return last, some, nil
}

// answerError is an answer of xmpptrack_commit that the store cannot
// read, after the server committed the call: the group is stored, its
// cursors are not known.
type answerError struct{ err error }

func (e *answerError) Error() string { return e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// prepareError is an error of preparing the call on a connection: nothing
// ran, so it is never in doubt.
type prepareError struct{ err error }

func (e *prepareError) Error() string { return e.err.Error() }
func (e *prepareError) Unwrap() error { return e.err }

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
	var prep *prepareError
	if errors.As(err, &pe) || errors.As(err, &prep) || errors.Is(err, errResult) {
		return false // the server answered; or nothing ran
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

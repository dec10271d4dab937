package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestCommitSameAsVersion6 runs the same random group commits through
// schema 6's xmpptrack_commit and through the current one: every batch
// gets the same outcome and cursors, and the feed, the records and the
// sessions read the same. The groups hold new messages (some settled from
// the start, some with ids that exist or that an earlier batch of the
// group holds), changes in every state on known and unknown ids (several
// for one message in a group, some on messages an earlier batch of the
// group creates), sequence numbers and sessions. XMPPTRACK_SEED replays a
// run.
func TestCommitSameAsVersion6(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	// A database with schema 6's function, stamped current so that Open
	// leaves it as it is.
	old := dbName(t, "same6")
	if _, err := srv.SQL(ctx, old, stampSQL(SchemaVersion)+migrations[0]+migrations[1]+migrations[5]); err != nil {
		t.Fatal(err)
	}
	stores := make([]*Store, 2)
	for i, dsn := range []string{srv.DSN("", old), database(t, "samenew")} {
		s, err := OpenConfig(ctx, dsn, Config{Retention: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	if out, err := srv.SQL(ctx, old, `SELECT prosrc = `+dollarQuoted(commitBody(migrations[1]))+
		` FROM pg_proc WHERE proname = 'xmpptrack_commit'`); err != nil || out != "t" {
		t.Fatalf("the old database has not schema 6's function: %q, %v", out, err)
	}
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	base := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var ids []string
	owners := []store.Instance{{Account: "a@example.org", Resource: "r"}, {Account: "b@example.org", Resource: "s"}}
	for round := range 40 {
		// One group, built twice from the same numbers.
		var plan []func() *store.Batch
		for range 1 + rng.IntN(12) {
			var ms []store.Message
			var cs []store.Change
			var ws []store.Written
			var ss []store.Session
			for range rng.IntN(4) {
				id := fmt.Sprintf("m%d", len(ids))
				if len(ids) > 0 && rng.IntN(10) == 0 {
					id = ids[rng.IntN(len(ids))] // exists, or comes later in the group
				} else {
					ids = append(ids, id)
				}
				m := msg(id)
				m.Owner = owners[rng.IntN(2)]
				m.Channel = fmt.Sprint("c", rng.IntN(3))
				m.Created = base.Add(time.Duration(round*1000+len(ids)) * time.Millisecond)
				if rng.IntN(4) == 0 {
					m.Deadline = m.Created.Add(time.Minute)
				}
				if rng.IntN(8) == 0 {
					m.State = tracking.MessageState(rng.IntN(numStates))
				}
				ms = append(ms, m)
			}
			for range rng.IntN(6) {
				id := "unknown"
				if len(ids) > 0 && rng.IntN(12) > 0 {
					id = ids[rng.IntN(len(ids))]
				}
				cs = append(cs, store.Change{ID: id, State: tracking.MessageState(1 + rng.IntN(numStates-1)),
					At:       base.Add(time.Duration(round*1000+rng.IntN(1000)) * time.Millisecond),
					Evidence: store.Evidence{From: fmt.Sprint("f", rng.IntN(3)), StanzaID: fmt.Sprint("s", rng.IntN(2)), Condition: fmt.Sprint("c", rng.IntN(2)), Text: fmt.Sprint("t", rng.IntN(2))}})
			}
			for range rng.IntN(3) {
				if len(ids) > 0 {
					ws = append(ws, store.Written{ID: ids[rng.IntN(len(ids))], Seq: rng.Uint32()})
				}
			}
			if rng.IntN(4) == 0 {
				ss = append(ss, store.Session{Owner: owners[rng.IntN(2)], JID: "a@example.org/r", ID: fmt.Sprint("sm", round),
					Max: time.Minute, Inbound: rng.Uint32(), Outbound: rng.Uint32(), Acked: rng.Uint32(), Updated: base.Add(time.Duration(round) * time.Second)})
			}
			b := &store.Batch{Messages: ms, Changes: cs, Written: ws, Sessions: ss}
			if b.Validate() != nil {
				continue
			}
			plan = append(plan, func() *store.Batch {
				return &store.Batch{Messages: slices.Clone(ms), Changes: slices.Clone(cs), Written: slices.Clone(ws), Sessions: slices.Clone(ss)}
			})
		}
		var outs [2][]string
		for k, s := range stores {
			group := make([]*groupcommit.Request, len(plan))
			for i, p := range plan {
				group[i] = groupcommit.NewRequest(p())
			}
			s.commitGroup(group)
			for _, r := range group {
				err := r.Wait()
				var cur []int64
				for _, m := range r.Batch.Messages {
					cur = append(cur, m.Cursor)
				}
				for _, c := range r.Batch.Changes {
					cur = append(cur, c.Cursor)
				}
				outs[k] = append(outs[k], fmt.Sprintf("exists %v, other error %v, cursors %v",
					errors.Is(err, store.ErrExists), err != nil && !errors.Is(err, store.ErrExists), cur))
			}
		}
		if !reflect.DeepEqual(outs[0], outs[1]) {
			t.Fatalf("round %d: schema 6 answered\n%v\nthe current schema\n%v", round, outs[0], outs[1])
		}
	}
	var feeds [2][]store.Change
	for k, s := range stores {
		for after := int64(0); ; {
			cs, err := s.Changes(ctx, store.FeedQuery{After: after, Limit: store.MaxFeedLimit})
			if err != nil {
				t.Fatal(err)
			}
			if len(cs) == 0 {
				break
			}
			feeds[k] = append(feeds[k], cs...)
			after = cs[len(cs)-1].Cursor
		}
	}
	if len(feeds[1]) < 100 || !reflect.DeepEqual(feeds[0], feeds[1]) {
		t.Fatalf("feeds differ (%d and %d changes):\n%+v\n%+v", len(feeds[0]), len(feeds[1]), feeds[0], feeds[1])
	}
	for _, id := range append(ids, "unknown") {
		var recs [2]store.Record
		var errs [2]error
		for k, s := range stores {
			recs[k], errs[k] = s.Message(ctx, id)
		}
		if !reflect.DeepEqual(recs[0], recs[1]) || (errs[0] == nil) != (errs[1] == nil) {
			t.Fatalf("message %s: schema 6 %+v, %v; current %+v, %v", id, recs[0], errs[0], recs[1], errs[1])
		}
	}
	for _, o := range owners {
		var sess [2]store.Session
		for k, s := range stores {
			var err error
			if sess[k], err = s.Session(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		if !reflect.DeepEqual(sess[0], sess[1]) {
			t.Fatalf("session of %v: %+v and %+v", o, sess[0], sess[1])
		}
	}
}

// testSeed is XMPPTRACK_SEED, or a new seed; the test logs it.
func testSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("XMPPTRACK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("XMPPTRACK_SEED: %v", err)
		}
	}
	t.Logf("seed %d (XMPPTRACK_SEED replays it)", seed)
	return seed
}

// TestFunctionSameAsVersion6 calls schema 6's and the current
// xmpptrack_commit with the same random arguments, built here rather than
// by the committer: the keys of new messages and changes interleaved, ids
// to lock unsorted (each once, as the committer sends them), new ids
// repeated in one call or existing, changes on messages of the same call
// and on unknown ids, in every state, sequence numbers and sessions. One
// database and then the other is analyzed part way, so that the two
// functions run with different plans for a while. After each call the
// answers (the result, or SQLSTATE, message and DETAIL) and every column
// of every row of the tables are the same. XMPPTRACK_SEED replays a run.
func TestFunctionSameAsVersion6(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	conns := make([]*pgx.Conn, 2)
	for k, m := range []string{stampSQL(6) + migrations[0] + migrations[1] + migrations[5],
		stampSQL(7) + migrations[0] + migrations[1] + migrations[5] + migrations[6]} {
		db := dbName(t, fmt.Sprint("fn", k))
		if _, err := srv.SQL(ctx, db, m); err != nil {
			t.Fatal(err)
		}
		c, err := pgx.Connect(ctx, srv.DSN("", db))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		conns[k] = c
	}
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	var ids []string
	ok, failed := 0, 0
	for call := range 300 {
		a := randomArgs(rng, &ids, call)
		if call%50 == 25 {
			// Statistics for one database only, as autovacuum may gather
			// them: the two functions' plans differ from here on, and
			// must not change an answer.
			if _, err := conns[call/50%2].Exec(ctx, "ANALYZE"); err != nil {
				t.Fatal(err)
			}
		}
		vals := a.encode()
		var answers, dumps [2]string
		for k, c := range conns {
			rr := c.PgConn().ExecParams(ctx, commitCall, vals, a.p.oids, binaryFormat, binaryFormat).Read()
			answers[k] = fmt.Sprintf("%x", rr.Rows)
			var pe *pgconn.PgError
			if errors.As(rr.Err, &pe) {
				answers[k] = fmt.Sprintf("%s %s %s", pe.Code, pe.Message, pe.Detail)
			} else if rr.Err != nil {
				t.Fatal(rr.Err)
			}
			if err := c.QueryRow(ctx, `SELECT
				(SELECT coalesce(string_agg(m::text, E'\n' ORDER BY m.n), '') FROM xmpptrack_messages m) || E'\n--\n' ||
				(SELECT coalesce(string_agg(c::text, E'\n' ORDER BY c.cursor), '') FROM xmpptrack_changes c) || E'\n--\n' ||
				(SELECT string_agg(f::text, '') FROM xmpptrack_feed f) || E'\n--\n' ||
				(SELECT coalesce(string_agg(s::text, E'\n' ORDER BY s.account, s.resource), '') FROM xmpptrack_sessions s)`).Scan(&dumps[k]); err != nil {
				t.Fatal(err)
			}
		}
		if answers[0] != answers[1] {
			t.Fatalf("call %d: schema 6 answered %s, the current schema %s", call, answers[0], answers[1])
		}
		if dumps[0] != dumps[1] {
			t.Fatalf("call %d: the tables differ; schema 6:\n%s\ncurrent:\n%s", call, dumps[0], dumps[1])
		}
		if strings.HasPrefix(answers[0], "XT") || strings.HasPrefix(answers[0], "2") {
			failed++
		} else {
			ok++
		}
	}
	if ok < 100 || failed == 0 {
		t.Errorf("%d calls committed, %d failed: the arguments miss a case", ok, failed)
	}
}

// randomArgs fills the arguments of one call as TestFunctionSameAsVersion6
// describes; ids collects the new ids (committed or not).
func randomArgs(rng *rand.Rand, ids *[]string, call int) *args {
	a := &args{}
	base := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC).Add(time.Duration(call) * time.Second)
	at := func() time.Time { return base.Add(time.Duration(rng.IntN(1000)) * time.Millisecond) }
	pick := func() string {
		switch {
		case len(*ids) == 0 || rng.IntN(10) == 0:
			return fmt.Sprint("unknown", rng.IntN(3))
		default:
			return (*ids)[len(*ids)-1-rng.IntN(min(len(*ids), 20))] // mostly recent ones, still pending
		}
	}
	nm, nc := rng.IntN(5), rng.IntN(9)
	keys := rng.Perm(nm + nc)
	for i := range nm {
		id := fmt.Sprint("r", len(*ids))
		switch rng.IntN(12) {
		case 0:
			if len(*ids) > 0 {
				id = pick() // exists, unless its call failed
			}
		case 1:
			if i > 0 {
				id = a.mID[rng.IntN(i)] // twice in this call
			}
		}
		*ids = append(*ids, id)
		st := tracking.InTransit
		if rng.IntN(8) == 0 {
			st = tracking.MessageState(rng.IntN(numStates))
		}
		settled := store.SettledState(st)
		raw := []byte(fmt.Sprintf("<message id='%s'/>", id))
		if settled {
			raw = nil
		}
		deadline := time.Time{}
		if rng.IntN(3) == 0 {
			deadline = base.Add(time.Minute)
		}
		a.mID = append(a.mID, id)
		a.mAccount = append(a.mAccount, fmt.Sprint("a", rng.IntN(2), "@example.org"))
		a.mResource = append(a.mResource, "r")
		a.mRcpt = append(a.mRcpt, "b@example.org")
		a.mRoom = append(a.mRoom, rng.IntN(2) == 0)
		a.mThread = append(a.mThread, fmt.Sprint("t", rng.IntN(2)))
		a.mChannel = append(a.mChannel, fmt.Sprint("c", rng.IntN(2)))
		a.mRaw = append(a.mRaw, raw)
		a.mCreated = append(a.mCreated, at())
		a.mDeadline = append(a.mDeadline, deadline)
		a.mState = append(a.mState, int16(st))
		a.mSettled = append(a.mSettled, settled)
		a.mKey = append(a.mKey, int32(keys[i]))
	}
	// The ids to lock are unsorted but each there once, as the committer
	// sends them: with an id twice, the function's UPDATE has two rows for
	// one message and the plan picks the one it keeps.
	for range rng.IntN(7) {
		id := pick()
		if nm > 0 && rng.IntN(3) == 0 {
			id = a.mID[rng.IntN(nm)] // created by this call
		}
		if !slices.Contains(a.lID, id) {
			a.lID = append(a.lID, id)
		}
	}
	if len(a.lID) == 0 {
		nc = 0
	}
	for i := range nc {
		a.cLock = append(a.cLock, int32(1+rng.IntN(len(a.lID))))
		a.cState = append(a.cState, int16(rng.IntN(numStates)))
		a.cAt = append(a.cAt, at())
		a.cFrom = append(a.cFrom, fmt.Sprint("f", rng.IntN(3)))
		a.cSID = append(a.cSID, fmt.Sprint("s", rng.IntN(2)))
		a.cCond = append(a.cCond, fmt.Sprint("c", rng.IntN(2)))
		a.cText = append(a.cText, fmt.Sprint("x", rng.IntN(2)))
		a.cKey = append(a.cKey, int32(keys[nm+i]))
	}
	for range rng.IntN(4) {
		if len(a.lID) > 0 {
			a.wLock = append(a.wLock, int32(1+rng.IntN(len(a.lID))))
			a.wSeq = append(a.wSeq, int64(rng.Uint32()))
		}
	}
	for k := range rng.IntN(3) {
		a.sAccount = append(a.sAccount, fmt.Sprint("a", k, "@example.org"))
		a.sResource = append(a.sResource, "r")
		a.sJID = append(a.sJID, "a@example.org/r")
		a.sSMID = append(a.sSMID, fmt.Sprint("sm", call))
		a.sLocation = append(a.sLocation, "")
		a.sMax = append(a.sMax, 60)
		a.sIn = append(a.sIn, int64(rng.Uint32()))
		a.sOut = append(a.sOut, int64(rng.Uint32()))
		a.sAcked = append(a.sAcked, int64(rng.Uint32()))
		a.sUpdated = append(a.sUpdated, base)
	}
	return a
}

package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestParamsRandomAsPgx compares the encoders with pgx's on random values:
// times over ±150,000 years in zones with odd offsets, NULLs, any bytes,
// any int8, arrays of up to 20,000 elements.
func TestParamsRandomAsPgx(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := pgtype.NewMap()
	randTime := func() time.Time {
		sec := r.Int64N(300000*365*86400) - 150000*365*86400
		if r.IntN(2) == 0 {
			sec = r.Int64N(4e9) - 2e9
		}
		loc := time.FixedZone("z", (r.IntN(48)-24)*1800+r.IntN(60))
		return time.Unix(sec, r.Int64N(1e9)).In(loc)
	}
	var p params
	for round := range 300 {
		n := r.IntN(50)
		if round%50 == 0 {
			n = 20000
		}
		ts := make([]time.Time, n)
		tz := make([]pgtype.Timestamptz, n)
		ss := make([]string, n)
		bs := make([][]byte, n)
		i8 := make([]int64, n)
		for i := range n {
			ts[i] = randTime()
			if r.IntN(3) == 0 {
				ts[i] = time.Time{}
			}
			tz[i] = pgtype.Timestamptz{Time: ts[i], Valid: !ts[i].IsZero()}
			b := make([]byte, r.IntN(20))
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
			ss[i] = string(b)
			if r.IntN(4) > 0 {
				bs[i] = b
			}
			i8[i] = int64(r.Uint64())
		}
		for _, c := range []struct {
			oid uint32
			v   any
			enc func()
		}{
			{pgtype.TimestamptzArrayOID, tz, func() { p.times(ts, true) }},
			{pgtype.TextArrayOID, ss, func() { p.texts(ss) }},
			{pgtype.ByteaArrayOID, bs, func() { p.byteas(bs) }},
			{pgtype.Int8ArrayOID, i8, func() { p.int8s(i8) }},
		} {
			p.reset()
			c.enc()
			got := p.values()[0]
			want, err := m.Encode(c.oid, pgtype.BinaryFormatCode, c.v, nil)
			if err != nil {
				t.Fatalf("%T: %v", c.v, err)
			}
			if !bytes.Equal(got, want) || p.oids[0] != c.oid {
				t.Fatalf("round %d %T differs (type %d)", round, c.v, p.oids[0])
			}
		}
	}
}

// testGroup is a group of n batches of every kind.
func testGroup(n int, prefix string) []*groupcommit.Request {
	var group []*groupcommit.Request
	at := time.Date(2026, 12, 6, 16, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprint(prefix, i)
		m := msg(id)
		m.Created, m.Deadline, m.Raw = at, at.Add(time.Hour), []byte(id)
		group = append(group, &groupcommit.Request{Batch: &store.Batch{
			Messages: []store.Message{m},
			Changes:  []store.Change{{ID: id, State: tracking.DeliveredToServer, At: at, Evidence: store.Evidence{From: id}}},
			Written:  []store.Written{{ID: id, Seq: uint32(i)}},
			Sessions: []store.Session{{Owner: store.Instance{Account: "a@example.org", Resource: id}, JID: id, Updated: at}},
		}})
	}
	return group
}

// TestArgsReused: the committer's args, after a large group, encode a
// small one exactly as fresh args do (no element of the large group left
// over), and after a very large one it keeps none of its buffers.
func TestArgsReused(t *testing.T) {
	encode := func(a *args, group []*groupcommit.Request) ([][]byte, []uint32, []result) {
		live := make([]int, len(group))
		for i := range live {
			live[i] = i
		}
		a.build(group, live, time.Now())
		var vals [][]byte
		for _, v := range a.encode() {
			vals = append(vals, bytes.Clone(v))
		}
		return vals, slices.Clone(a.p.oids), slices.Clone(a.keys)
	}
	var reused args
	encode(&reused, testGroup(300, "big"))
	reused.release()
	small := testGroup(3, "small")
	got, gotOIDs, gotKeys := encode(&reused, small)
	want, wantOIDs, wantKeys := encode(new(args), small)
	if !slices.EqualFunc(got, want, bytes.Equal) || !slices.Equal(gotOIDs, wantOIDs) || !slices.Equal(gotKeys, wantKeys) {
		t.Fatal("args reused after a large group encode a small one differently")
	}
	if len(gotOIDs) != 36 || slices.Contains(gotOIDs, 0) {
		t.Fatalf("parameter types %v", gotOIDs)
	}
	reused.release()
	encode(&reused, testGroup(maxKeptRows+1, "huge"))
	reused.release()
	if reused.p.buf != nil || reused.mID != nil || reused.keys != nil {
		t.Error("args kept the buffers of a group above maxKeptRows")
	}
	big := testGroup(3, "bytes") // few rows, more than maxKeptBytes
	for _, r := range big {
		r.Batch.Messages[0].Raw = make([]byte, maxKeptBytes/2)
	}
	encode(&reused, big)
	reused.release()
	if reused.p.buf != nil {
		t.Error("args kept a buffer above maxKeptBytes")
	}
	s := &Store{}
	s.duplicates(testGroup(maxKeptRows+1, "ids"))
	if s.seen != nil {
		t.Error("the duplicate map of a group above maxKeptRows was kept")
	}
}

// TestErrorClasses: a failed Prepare ran nothing (tried again at once on
// fresh connections, never in doubt); an answer the store cannot read is
// not in doubt either.
func TestErrorClasses(t *testing.T) {
	prep := &prepareError{io.ErrUnexpectedEOF}
	if !unsent(prep) || doubtful(prep) {
		t.Errorf("prepare error: unsent %v, doubtful %v", unsent(prep), doubtful(prep))
	}
	ans := &answerError{fmt.Errorf("%w: 2 rows", errResult)}
	if unsent(ans) || doubtful(ans) || doubtful(ans.err) {
		t.Errorf("answer error: unsent %v, doubtful %v", unsent(ans), doubtful(ans))
	}
	if !doubtful(io.ErrUnexpectedEOF) {
		t.Error("a broken connection during the call is not in doubt")
	}
}

// TestStatementGone: a connection whose prepared call the server dropped
// (DEALLOCATE ALL, as a pooler moving the client between server sessions
// may) prepares it again, and no commit fails; with a DSN that asks pgx
// not to cache statements the store prepares none.
func TestStatementGone(t *testing.T) {
	for _, mode := range []string{"", "simple_protocol", "exec"} {
		t.Run("mode="+mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			dsn := database(t, "gone"+mode)
			if mode != "" {
				dsn += "&default_query_exec_mode=" + mode
			}
			s, err := OpenConfig(ctx, dsn, Config{Retention: -1, MaxConns: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("g0")}}); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE name = $1`, commitStmt).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[mode == ""]; n != want {
				t.Errorf("prepared statements %q: %d, want %d", commitStmt, n, want)
			}
			if _, err := s.pool.Exec(ctx, `DEALLOCATE ALL`); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				b := &store.Batch{Messages: []store.Message{msg(fmt.Sprint("g", i))}}
				if err := s.Commit(ctx, b); err != nil || b.Messages[0].Cursor != int64(i+1) {
					t.Errorf("commit %d: cursor %d, %v", i, b.Messages[0].Cursor, err)
				}
			}
		})
	}
}

// TestUpgradeNeedsOwner: a role with CREATE on the schema and the grants
// an instance needs cannot upgrade a database its owner created (ALTER
// FUNCTION needs the owner), and Open says that the upgrade must run as
// the owner, not that CREATE is missing.
func TestUpgradeNeedsOwner(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	name := dbName(t, "upowner")
	role := "upowner_" + strings.TrimPrefix(name, "upowner_")
	if _, err := srv.SQL(ctx, name, stampSQL(2)+migrations[0]+migrations[1]+`
		CREATE ROLE `+role+` LOGIN; GRANT CREATE, USAGE ON SCHEMA public TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO `+role+`;
		GRANT USAGE ON SEQUENCE xmpptrack_messages_n_seq TO `+role); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, srv.DSN(role, name))
	if err == nil {
		s.Close()
		t.Fatal("a role that owns nothing upgraded the schema")
	}
	if !errors.Is(err, ErrPrivileges) || !strings.Contains(err.Error(), "must run as the owner") ||
		strings.Contains(err.Error(), "needs the CREATE privilege") {
		t.Errorf("Open: %v", err)
	}
}

// TestAnswerUnreadable: an answer the store cannot read after the server
// committed the call fails each batch with store.ErrCursorsUnknown (they
// are stored), not as a call in doubt, and has woken the Store's waiters
// when Commit returns (the committer woke them after answering: 1 failure
// in 300 runs with -race).
func TestAnswerUnreadable(t *testing.T) {
	life, stop := context.WithCancel(context.Background())
	defer stop()
	s := &Store{notify: make(chan struct{}), cfg: Config{
		try: func([]*groupcommit.Request, []int) ([]result, map[string]bool, error) {
			return nil, nil, &answerError{fmt.Errorf("%w: 2 rows", errResult)}
		},
	}}
	woke := s.notify
	q := groupcommit.New(life)
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(s.commitGroup)
	}()
	err := q.Commit(context.Background(), &store.Batch{Messages: []store.Message{msg("a")}})
	if !errors.Is(err, store.ErrCursorsUnknown) || errors.Is(err, store.ErrOutcomeUnknown) {
		t.Errorf("Commit: %v, want ErrCursorsUnknown", err)
	}
	select {
	case <-woke:
	default:
		t.Error("the waiters were not woken")
	}
	stop()
	<-done
}

// TestGroupBlockedRetried: in one group, batch A holds ids x and y, batch
// B holds x; y exists, so A fails, and B, refused in the group for x
// (A's), is written on its own: x was never stored.
func TestGroupBlockedRetried(t *testing.T) {
	ctx := context.Background()
	s, err := OpenConfig(ctx, database(t, "blocked"), Config{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Commit(ctx, &store.Batch{Messages: []store.Message{msg("y")}}); err != nil {
		t.Fatal(err)
	}
	a := groupcommit.NewRequest(&store.Batch{Messages: []store.Message{msg("x"), msg("y")}})
	b := groupcommit.NewRequest(&store.Batch{Messages: []store.Message{msg("x")}})
	c := groupcommit.NewRequest(&store.Batch{Messages: []store.Message{msg("z"), msg("z")}}) // itself
	s.commitGroup([]*groupcommit.Request{a, b, c})
	if err := a.Wait(); !errors.Is(err, store.ErrExists) {
		t.Errorf("A: %v, want ErrExists", err)
	}
	if err := b.Wait(); err != nil || b.Batch.Messages[0].Cursor == 0 {
		t.Errorf("B: cursor %d, %v", b.Batch.Messages[0].Cursor, err)
	}
	if err := c.Wait(); !errors.Is(err, store.ErrExists) {
		t.Errorf("C: %v, want ErrExists", err)
	}
	if _, err := s.Message(ctx, "x"); err != nil {
		t.Errorf("x: %v", err)
	}
}

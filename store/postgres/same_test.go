package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/tracking"
)

// TestCommitSameAsVersion6 runs the same random group commits through
// schema 6's xmpptrack_commit and through the current one: every batch
// gets the same outcome and cursors, and the feed, the records and the
// sessions read the same. The groups hold new messages (some settled from
// the start, some with ids that exist), changes in every state on known
// and unknown ids (several for one message in a group, some before the
// message's own insert in the group), sequence numbers and sessions.
func TestCommitSameAsVersion6(t *testing.T) {
	ctx := context.Background()
	srv := server(t)
	// A database with schema 6's function, stamped current so that Open
	// leaves it as it is.
	old := dbName(t, "same6")
	if _, err := srv.SQL(ctx, old, `CREATE TABLE xmpptrack_schema (app text NOT NULL, version integer NOT NULL);
		INSERT INTO xmpptrack_schema VALUES ('xmpptrack', `+fmt.Sprint(SchemaVersion)+`);`+
		migrations[0]+migrations[1]+migrations[5]); err != nil {
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
	if out, err := srv.SQL(ctx, old, `SELECT prosrc LIKE '%r_k%' FROM pg_proc WHERE proname = 'xmpptrack_commit'`); err != nil || out != "f" {
		t.Fatalf("the old database has the current function: %q, %v", out, err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
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
				return &store.Batch{Messages: clone(ms), Changes: clone(cs), Written: clone(ws), Sessions: clone(ss)}
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

func clone[T any](s []T) []T { return append([]T(nil), s...) }

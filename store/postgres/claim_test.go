package postgres

import (
	"context"
	"fmt"
	"github.com/xmpptrack/xmpptrack/store/storetest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
)

// TestClaimGroup: one group of claims, written by one statement: two
// claims of one key in it see each other (the second gets the first's
// value), a live key answers with its value, an expired one is replaced,
// and a key without expiry is stored as such.
func TestClaimGroup(t *testing.T) {
	ctx := context.Background()
	s := opener(Config{Retention: -1})(t, "claims")
	defer s.Close()
	ps := s.(*Store)
	now := time.Now()
	for _, k := range []store.Key{
		{Scope: "s", Name: "live", Value: "old-live", Expires: now.Add(time.Hour)},
		{Scope: "s", Name: "expired", Value: "old-expired", Expires: now.Add(-time.Hour)},
	} {
		if _, ok, err := s.ClaimKey(ctx, k); err != nil || !ok {
			t.Fatalf("claim %s: %v %v", k.Name, ok, err)
		}
	}
	key := func(name, value string, exp time.Time) *groupcommit.Request {
		return groupcommit.NewClaim(store.Key{Scope: "s", Name: name, Value: value, Expires: exp})
	}
	later := now.Add(time.Hour)
	reqs := []*groupcommit.Request{
		key("new", "a", later), key("live", "b", later), key("new", "c", later),
		key("expired", "d", later), key("forever", "e", time.Time{}), key("expired", "f", later),
	}
	ps.claimGroup(reqs)
	want := []struct {
		v  string
		ok bool
	}{{"a", true}, {"old-live", false}, {"a", false}, {"d", true}, {"e", true}, {"d", false}}
	for i, r := range reqs {
		if err := r.Wait(); err != nil || r.Value != want[i].v || r.Claimed != want[i].ok {
			t.Errorf("claim %d (%s): %q %v %v, want %q %v", i, r.Key.Name, r.Value, r.Claimed, err, want[i].v, want[i].ok)
		}
	}
	var expires *time.Time
	if err := ps.pool.QueryRow(ctx, `SELECT expires FROM xmpptrack_keys WHERE scope = 's' AND name = 'forever'`).Scan(&expires); err != nil || expires != nil {
		t.Errorf("a key without expiry stored with %v (%v)", expires, err)
	}
	if v, ok, err := s.Key(ctx, "s", "expired"); err != nil || !ok || v != "d" {
		t.Errorf("replaced key: %q %v %v", v, ok, err)
	}
}

// BenchmarkPost measures what a gateway POST costs the store from 64
// goroutines (storetest.Post): the write-ahead alone, and with an
// Idempotency-Key's claim before it. It reports the client's and the
// database server's CPU per message.
func BenchmarkPost(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "keyed"}[keyed], func(b *testing.B) {
			s, err := OpenConfig(context.Background(), benchDSN(b), Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var n atomic.Int64
			cpu := startCPU()
			b.SetParallelism(64)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := storetest.Post(context.Background(), s, fmt.Sprintf("m%012d", n.Add(1)), keyed); err != nil {
						b.Error(err)
						return
					}
				}
			})
			cpu.report(b, n.Load())
		})
	}
}

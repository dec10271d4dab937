package postgres

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/storetest"
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

// BenchmarkPost measures what a gateway POST costs the store
// (storetest.BenchPost): the write-ahead alone, and with an
// Idempotency-Key's claim before it. It reports the client's and the
// database server's CPU per message.
func BenchmarkPost(b *testing.B) {
	storetest.BenchPost(b, func(b *testing.B) store.Store {
		s, err := OpenConfig(context.Background(), benchDSN(b), Config{})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}, func() func(*testing.B, int64) { return startCPU().report })
}

// TestClaimReadFails: the server fails the statement that reads a group's
// keys after storing some of them. A caller is told claimed=true exactly
// when its claim stored its key: here the group is tried again, claim by
// claim, and each new key is reported claimed by its own caller. (Before
// the group's claims were one transaction, the keys stayed stored and
// every caller was told claimed=false.)
func TestClaimReadFails(t *testing.T) {
	ctx := context.Background()
	var fail atomic.Bool
	var reads atomic.Int32
	s := opener(Config{Retention: -1, claimRead: func() string {
		reads.Add(1)
		if fail.CompareAndSwap(true, false) {
			return `SELECT 'x', 'y', 'z' FROM unnest($1::text[], $2::text[]) WHERE 1/0 = 1`
		}
		return sqlReadKeys
	}})(t, "claimread")
	defer s.Close()
	ps := s.(*Store)
	later := time.Now().Add(time.Hour)
	if _, ok, err := s.ClaimKey(ctx, store.Key{Scope: "s", Name: "live", Value: "old", Expires: later}); err != nil || !ok {
		t.Fatalf("claim live: %v %v", ok, err)
	}
	reads.Store(0)
	fail.Store(true)
	reqs := []*groupcommit.Request{
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "a", Value: "va", Expires: later}),
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "live", Value: "vl", Expires: later}),
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "b", Value: "vb", Expires: later}),
	}
	ps.claimGroup(reqs)
	if reads.Load() < 2 {
		t.Fatalf("the failing read ran %d times, want it to fail once and the claims to be made again", reads.Load())
	}
	checkClaims(t, s, reqs, map[string]bool{"a": true, "b": true}, map[string]string{"a": "va", "live": "old", "b": "vb"})
}

// checkClaims checks the answers of the claims reqs: claimed[name] is
// whether the first claim of that key must say it stored it (a repeat
// never does), stored[name] the
// value each must get, and the value stored in s. A claim that failed must
// have stored nothing (stored has no value for it).
func checkClaims(t *testing.T, s store.Store, reqs []*groupcommit.Request, claimed map[string]bool, stored map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for i, r := range reqs {
		err := r.Wait()
		first := !seen[r.Key.Name]
		seen[r.Key.Name] = true
		want, ok := stored[r.Key.Name]
		if !ok {
			if err == nil {
				t.Errorf("claim %d (%s): no error, want one", i, r.Key.Name)
			}
		} else if err != nil || r.Value != want || r.Claimed != (first && claimed[r.Key.Name]) {
			t.Errorf("claim %d (%s): %q claimed %v err %v, want %q claimed %v", i, r.Key.Name, r.Value, r.Claimed, err, want, first && claimed[r.Key.Name])
		}
		v, found, err := s.Key(context.Background(), r.Key.Scope, r.Key.Name)
		if err != nil || found != ok || v != want {
			t.Errorf("stored %s: %q %v %v, want %q %v", r.Key.Name, v, found, err, want, ok)
		}
	}
}

// TestClaimFailsAlone: a claim the server refuses (a value PostgreSQL
// cannot store) among good ones fails alone and stores nothing; the
// others are answered as if it were not there.
func TestClaimFailsAlone(t *testing.T) {
	s := opener(Config{Retention: -1})(t, "claimalone")
	defer s.Close()
	later := time.Now().Add(time.Hour)
	reqs := []*groupcommit.Request{
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "a", Value: "va", Expires: later}),
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "bad", Value: "nul\x00", Expires: later}),
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "b", Value: "vb", Expires: later}),
		groupcommit.NewClaim(store.Key{Scope: "s", Name: "a", Value: "va2", Expires: later}),
	}
	s.(*Store).claimGroup(reqs)
	checkClaims(t, s, reqs, map[string]bool{"a": true, "b": true}, map[string]string{"a": "va", "b": "vb"})
}

// TestClaimAfterRestart: the server ended every session of the store's
// pool (as a restart does); the next claim is made on fresh connections,
// as a commit is, instead of failing.
func TestClaimAfterRestart(t *testing.T) {
	ctx := context.Background()
	s := opener(Config{Retention: -1, MaxConns: 2})(t, "claimrestart")
	defer s.Close()
	later := time.Now().Add(time.Hour)
	if _, ok, err := s.ClaimKey(ctx, store.Key{Scope: "s", Name: "before", Value: "v", Expires: later}); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if _, err := server(t).SQL(ctx, dbName(t, "claimrestart"), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.ClaimKey(ctx, store.Key{Scope: "s", Name: "after", Value: "v", Expires: later}); err != nil || !ok || v != "v" {
		t.Errorf("claim after the sessions ended: %q %v %v", v, ok, err)
	}
}

// TestClaimBounded: a claim whose key another transaction holds locked
// for ever ends with the claims' bound (shortened here), reporting that
// its outcome is unknown, instead of keeping its caller and Close waiting.
func TestClaimBounded(t *testing.T) {
	ctx := context.Background()
	dsn := database(t, "claimbound")
	s, err := OpenConfig(ctx, dsn, Config{Retention: -1, claimTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO xmpptrack_keys (scope, name, value) VALUES ('s', 'x', 'held')`); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.ClaimKey(ctx, store.Key{Scope: "s", Name: "x", Value: "v"})
	if !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Errorf("claim of a key locked for ever: %v, want ErrOutcomeUnknown", err)
	}
}

package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// ClaimKey implements store.Store. A zero Expires never expires.
//
// Claims have a group commit of their own (a groupcommit queue beside the
// committer's): the claims of concurrent callers are stored and read back
// by one transaction, sent in one round trip, where each was a transaction
// of its own (a keyed POST of the gateway cost about twice a plain one). A
// claim after another of the same key in one group gets the first one's
// value. A claim the server refuses fails alone (the group is made again
// claim by claim); a broken connection fails the whole group, with
// store.ErrOutcomeUnknown when the transaction may have committed.
func (s *Store) ClaimKey(ctx context.Context, k store.Key) (string, bool, error) {
	if s.isClosed() {
		return "", false, store.ErrClosed
	}
	return s.claims.Claim(ctx, k)
}

// The statements of a group of claims, one READ COMMITTED transaction:
// insert the keys, or replace expired ones (a live key is left alone),
// returning those written; then read all of the group's keys, in a
// statement of its own (a snapshot that sees the keys other transactions
// committed while the insert waited for them).
const (
	sqlClaimBegin = `BEGIN ISOLATION LEVEL READ COMMITTED`
	sqlClaimKeys  = `INSERT INTO xmpptrack_keys (scope, name, value, expires)
		SELECT scope, name, value, CASE WHEN forever THEN NULL ELSE expires END
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bool[]) AS k(scope, name, value, expires, forever)
		ON CONFLICT (scope, name) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires
		WHERE xmpptrack_keys.expires IS NOT NULL AND xmpptrack_keys.expires < $6
		RETURNING scope, name`
	sqlReadKeys = `SELECT x.scope, x.name, x.value FROM unnest($1::text[], $2::text[]) AS k(scope, name)
		JOIN xmpptrack_keys x ON x.scope = k.scope AND x.name = k.name`
)

// claimTimeout bounds the attempts of one group of claims together: the
// time a caller that has gone, or Close, waits for a claim already taken.
// A group is a few small statements, its only waits the row locks of
// other groups' claims, as short.
const claimTimeout = 10 * time.Second

// claimGroup claims the keys of group and answers each claim. If the
// server refuses the transaction (which then stored nothing), each claim
// is made again on its own, so that a claim fails only for its own
// reasons. A claim answered without an error was stored (Claimed) or found
// live, in one transaction: a caller is told Claimed exactly when its
// claim stored its key.
func (s *Store) claimGroup(group []*groupcommit.Request) {
	failed, err := s.claimAll(group)
	var pe *pgconn.PgError
	alone := err != nil && len(group) > 1 && errors.As(err, &pe)
	for _, r := range group {
		switch {
		case !failed[r]:
			r.Answer(nil) // stored or found by a transaction that committed
		case alone:
			_, err := s.claimAll([]*groupcommit.Request{r})
			r.Answer(err)
		default:
			r.Answer(err)
		}
	}
}

// keyName is a key's identity.
type keyName struct{ scope, name string }

// claimAll claims the keys of group, setting each request's Value and
// Claimed: the first claim of each key in the group is written, a later
// one gets its outcome as a repeat. Like commitGroup, it tries again on
// fresh connections after a broken one that did not send the transaction.
// On an error it returns the claims that failed with it: those a
// committed transaction answered (before keys pruned meanwhile were tried
// again) keep their answers.
func (s *Store) claimAll(group []*groupcommit.Request) (map[*groupcommit.Request]bool, error) {
	bound := claimTimeout
	if s.cfg.claimTimeout > 0 {
		bound = s.cfg.claimTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	first := make(map[keyName]*groupcommit.Request, len(group))
	var todo []*groupcommit.Request
	for _, r := range group {
		r.Value, r.Claimed = "", false
		kn := keyName{r.Key.Scope, r.Key.Name}
		if first[kn] == nil {
			first[kn] = r
			todo = append(todo, r)
		}
	}
	// One order for every writer: two groups that share keys lock them in
	// the same order, and never deadlock.
	slices.SortFunc(todo, func(a, b *groupcommit.Request) int {
		return cmp.Or(cmp.Compare(a.Key.Scope, b.Key.Scope), cmp.Compare(a.Key.Name, b.Key.Name))
	})
	resets := 0
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == 10 {
			return failing(group, first, todo), fmt.Errorf("postgres: claim: keys keep changing (%s/%s ...)", todo[0].Key.Scope, todo[0].Key.Name)
		}
		left, err := s.claimOnce(ctx, todo)
		switch {
		case err == nil:
			todo = left // pruned after the insert found them: again
			continue
		case retryable(err) && attempt < 5:
			continue
		case unsent(err) && resets < 2:
			resets++
			s.pool.Reset()
			continue
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) && !pgconn.SafeToRetry(err) {
			// The transaction may have reached the server, and its
			// COMMIT with it.
			return failing(group, first, todo), fmt.Errorf("postgres: claim: %w: %w", store.ErrOutcomeUnknown, err)
		}
		return failing(group, first, todo), fmt.Errorf("postgres: claim: %w", err)
	}
	for _, r := range group {
		if f := first[keyName{r.Key.Scope, r.Key.Name}]; f != r {
			r.Value, r.Claimed = f.Value, false
		}
	}
	return nil, nil
}

// failing returns the claims of group that fail with the claims todo:
// those, and the later claims of their keys.
func failing(group []*groupcommit.Request, first map[keyName]*groupcommit.Request, todo []*groupcommit.Request) map[*groupcommit.Request]bool {
	failed := make(map[*groupcommit.Request]bool, len(todo))
	for _, r := range todo {
		failed[r] = true
	}
	for _, r := range group {
		if failed[first[keyName{r.Key.Scope, r.Key.Name}]] {
			failed[r] = true
		}
	}
	return failed
}

// claimOnce runs the transaction for todo (sorted, one claim per key), in
// one round trip, and sets the Value and Claimed of the claims it answers
// (only if it committed). It returns the claims whose key it found neither
// written nor there.
func (s *Store) claimOnce(ctx context.Context, todo []*groupcommit.Request) ([]*groupcommit.Request, error) {
	n := len(todo)
	scopes, names, values := make([]string, n), make([]string, n), make([]string, n)
	expires, forever := make([]time.Time, n), make([]bool, n)
	for i, r := range todo {
		k := r.Key
		scopes[i], names[i], values[i] = k.Scope, k.Name, k.Value
		expires[i], forever[i] = k.Expires, k.Expires.IsZero()
		if forever[i] {
			expires[i] = time.Unix(0, 0)
		}
	}
	read := sqlReadKeys
	if s.cfg.claimRead != nil {
		read = s.cfg.claimRead()
	}
	var b pgx.Batch
	b.Queue(sqlClaimBegin)
	b.Queue(sqlClaimKeys, scopes, names, values, expires, forever, time.Now())
	b.Queue(read, scopes, names)
	b.Queue("COMMIT")
	br := s.pool.SendBatch(ctx, &b)
	stored, live, err := claimResults(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	var left []*groupcommit.Request
	for _, r := range todo {
		kn := keyName{r.Key.Scope, r.Key.Name}
		if v, ok := live[kn]; stored[kn] {
			r.Value, r.Claimed = r.Key.Value, true
		} else if ok {
			r.Value = v
		} else {
			left = append(left, r)
		}
	}
	return left, nil
}

// claimResults reads the answers of claimOnce's transaction: the keys the
// insert stored, and the values of the group's keys there after it.
func claimResults(br pgx.BatchResults) (stored map[keyName]bool, live map[keyName]string, err error) {
	if _, err := br.Exec(); err != nil {
		return nil, nil, err
	}
	stored, live = map[keyName]bool{}, map[keyName]string{}
	var kn keyName
	var v string
	rows, _ := br.Query()
	_, err = pgx.ForEachRow(rows, []any{&kn.scope, &kn.name}, func() error {
		stored[kn] = true
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	rows, _ = br.Query()
	_, err = pgx.ForEachRow(rows, []any{&kn.scope, &kn.name, &v}, func() error {
		live[kn] = v
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	tag, err := br.Exec()
	if err != nil {
		return nil, nil, err
	}
	if tag.String() != "COMMIT" {
		return nil, nil, fmt.Errorf("COMMIT answered %q", tag.String())
	}
	return stored, live, nil
}

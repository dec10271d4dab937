package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/internal/groupcommit"
)

// ClaimKey implements store.Store. A zero Expires never expires.
//
// Claims have a group commit of their own (a groupcommit queue beside the
// committer's): the claims of concurrent callers are written by one
// statement, one transaction, where each was a transaction of its own
// (a keyed POST of the gateway cost about twice a plain one). A claim
// after another of the same key in one group gets the first one's value.
func (s *Store) ClaimKey(ctx context.Context, k store.Key) (string, bool, error) {
	if s.isClosed() {
		return "", false, store.ErrClosed
	}
	return s.claims.Claim(ctx, k)
}

// The statements of a group of claims: insert the keys, or replace
// expired ones (a live key is left alone), returning those written; then,
// in a statement of its own (a snapshot that sees the keys other
// transactions committed while the insert waited for them), read the
// others.
const (
	sqlClaimKeys = `INSERT INTO xmpptrack_keys (scope, name, value, expires)
		SELECT scope, name, value, CASE WHEN forever THEN NULL ELSE expires END
		FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bool[]) AS k(scope, name, value, expires, forever)
		ON CONFLICT (scope, name) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires
		WHERE xmpptrack_keys.expires IS NOT NULL AND xmpptrack_keys.expires < $6
		RETURNING scope, name`
	sqlReadKeys = `SELECT x.scope, x.name, x.value FROM unnest($1::text[], $2::text[]) AS k(scope, name)
		JOIN xmpptrack_keys x ON x.scope = k.scope AND x.name = k.name`
)

// claimGroup claims the keys of group and answers each claim. If the
// server refuses the statement (which then wrote nothing), each claim is
// made again on its own, so that a claim fails only for its own reasons.
func (s *Store) claimGroup(group []*groupcommit.Request) {
	err := s.claimAll(group)
	var pe *pgconn.PgError
	if err != nil && len(group) > 1 && errors.As(err, &pe) {
		for _, r := range group {
			r.Answer(s.claimAll([]*groupcommit.Request{r}))
		}
		return
	}
	for _, r := range group {
		r.Answer(err)
	}
}

// keyName is a key's identity.
type keyName struct{ scope, name string }

// claimAll claims the keys of group, setting each request's Value and
// Claimed: the first claim of each key in the group is written, a later
// one gets its outcome as a repeat.
func (s *Store) claimAll(group []*groupcommit.Request) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first := make(map[keyName]*groupcommit.Request, len(group))
	var todo []*groupcommit.Request
	for _, r := range group {
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
	for attempt := 0; len(todo) > 0; attempt++ {
		if attempt == 10 {
			return fmt.Errorf("postgres: claim: keys keep changing (%s/%s ...)", todo[0].Key.Scope, todo[0].Key.Name)
		}
		left, err := s.claimOnce(ctx, todo)
		if retryable(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("postgres: claim: %w", err)
		}
		todo = left // pruned between the two statements: again
	}
	for _, r := range group {
		if f := first[keyName{r.Key.Scope, r.Key.Name}]; f != r {
			r.Value, r.Claimed = f.Value, false
		}
	}
	return nil
}

// claimOnce runs the two statements for todo (sorted, one claim per key),
// and returns the claims whose key it found neither written nor there.
func (s *Store) claimOnce(ctx context.Context, todo []*groupcommit.Request) ([]*groupcommit.Request, error) {
	n := len(todo)
	scopes, names, values := make([]string, n), make([]string, n), make([]string, n)
	expires, forever := make([]time.Time, n), make([]bool, n)
	at := make(map[keyName]*groupcommit.Request, n)
	for i, r := range todo {
		k := r.Key
		scopes[i], names[i], values[i] = k.Scope, k.Name, k.Value
		expires[i], forever[i] = k.Expires, k.Expires.IsZero()
		if forever[i] {
			expires[i] = time.Unix(0, 0)
		}
		at[keyName{k.Scope, k.Name}] = r
		r.Value, r.Claimed = "", false
	}
	rows, err := s.pool.Query(ctx, sqlClaimKeys, scopes, names, values, expires, forever, time.Now())
	if err != nil {
		return nil, err
	}
	var kn keyName
	for rows.Next() {
		if err := rows.Scan(&kn.scope, &kn.name); err != nil {
			rows.Close()
			return nil, err
		}
		if r := at[kn]; r != nil {
			r.Value, r.Claimed = r.Key.Value, true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	scopes, names = scopes[:0], names[:0]
	for _, r := range todo {
		if !r.Claimed {
			scopes, names = append(scopes, r.Key.Scope), append(names, r.Key.Name)
		}
	}
	if len(scopes) == 0 {
		return nil, nil
	}
	found := make(map[*groupcommit.Request]bool, len(scopes))
	rows, err = s.pool.Query(ctx, sqlReadKeys, scopes, names)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var v string
		if err := rows.Scan(&kn.scope, &kn.name, &v); err != nil {
			rows.Close()
			return nil, err
		}
		if r := at[kn]; r != nil && !r.Claimed {
			r.Value = v
			found[r] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var left []*groupcommit.Request
	for _, r := range todo {
		if !r.Claimed && !found[r] {
			left = append(left, r)
		}
	}
	return left, nil
}

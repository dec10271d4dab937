package sqlite

import (
	"context"

	"github.com/xmpptrack/xmpptrack/internal/groupcommit"
	"github.com/xmpptrack/xmpptrack/store"
)

// ClaimKey implements store.Store. A zero Expires never expires. The claim
// goes through the group commit (groupcommit's Claim): the claims of
// concurrent callers share the transactions of the batches committed with
// them, where each is a transaction of its own otherwise; a claim after
// another of the same key in one transaction sees it.
func (s *Store) ClaimKey(ctx context.Context, k store.Key) (string, bool, error) {
	if s.isClosed() {
		return "", false, store.ErrClosed
	}
	return s.group.Claim(ctx, k)
}

// The statements of a claim, prepared on the writer's connection.
const (
	sqlGetKey = `SELECT value, expires FROM keys WHERE scope = ? AND name = ?`
	sqlPutKey = `INSERT INTO keys (scope, name, value, expires) VALUES (?, ?, ?, ?)
		ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value, expires = excluded.expires`
)

// do writes r's batch, or claims its key.
func (w *writer) do(r *groupcommit.Request) error {
	if r.Key != nil {
		return w.claim(r)
	}
	return w.apply(r.Batch)
}

// claim stores r's key unless an unexpired key of the same scope and name
// exists (in the database, or claimed earlier in the transaction), and
// sets r's Value and Claimed. The transaction holds SQLite's write lock:
// the read and the write see the same key. Run again (a transaction tried
// again), it sets them again.
func (w *writer) claim(r *groupcommit.Request) error {
	k := r.Key
	v, err := w.c.queryRow(getKey, k.Scope, k.Name)
	if err != nil {
		return err
	}
	if v != nil {
		if exp, _ := v[1].(int64); exp == 0 || exp >= micros(w.now) {
			switch val := v[0].(type) {
			case string:
				r.Value = val
			case []byte:
				r.Value = string(val)
			}
			r.Claimed = false
			return nil
		}
	}
	if _, err := w.c.exec(putKey, k.Scope, k.Name, k.Value, micros(k.Expires)); err != nil {
		return err
	}
	if f := w.s.cfg.failClaim; f != nil {
		if err := f(*k); err != nil {
			return err
		}
	}
	r.Value, r.Claimed = k.Value, true
	return nil
}

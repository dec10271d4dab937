package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/sqlite"
)

// openStore opens the -store record: a SQLite file, or "memory" to keep the
// record in memory (lost at exit). A postgres:// DSN needs the PostgreSQL
// store.
func openStore(ctx context.Context, spec string) (store.Store, func(), error) {
	switch {
	case spec == "memory":
		return nil, func() {}, nil
	case strings.HasPrefix(spec, "postgres://"), strings.HasPrefix(spec, "postgresql://"):
		return openPostgres(ctx, spec)
	}
	st, err := sqlite.Open(ctx, spec)
	if err != nil {
		return nil, nil, fmt.Errorf("-store %s: %w", spec, err)
	}
	return st, func() { st.Close() }, nil
}

// clientResource returns the resource an account's client logs in with:
// the one its JID names, else instance followed by a hash of the account
// ("gateway-1f2e3d4c"). The client's part of the store (its lease, its
// pending messages, its stream) belongs to that account and resource: a
// restart with the same -resource takes back what the last run left
// pending, and each resource belongs to one account, so that accounts
// sharing a store never share one.
func clientResource(a accountConfig, instance string) string {
	if a.resource != "" {
		return a.resource
	}
	h := sha256.Sum256([]byte(a.account.String()))
	return instance + "-" + hex.EncodeToString(h[:4])
}

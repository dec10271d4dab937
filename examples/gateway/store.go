package main

import (
	"context"
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

// clientResource is the resource the accounts log in with when their clients
// keep a store: the next start takes back that resource's pending messages.
const clientResource = "gateway"

// openClientStore opens the accounts' clients' own store for a SQLite -store
// PATH: PATH.client. The clients keep in it what a restart needs to go on
// tracking (each message's stanza, the unacknowledged ones, the state of
// every tracker); the gateway's record stays in PATH. They cannot share one
// store: both would record the same message ids. With "memory" or a
// PostgreSQL store the clients keep no store (several gateways on one
// account would fight over one resource's record).
func openClientStore(ctx context.Context, spec string) (store.Store, func(), error) {
	if spec == "memory" || strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://") {
		return nil, func() {}, nil
	}
	st, err := sqlite.Open(ctx, spec+".client")
	if err != nil {
		return nil, nil, fmt.Errorf("-store %s.client: %w", spec, err)
	}
	return st, func() { st.Close() }, nil
}

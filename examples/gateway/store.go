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

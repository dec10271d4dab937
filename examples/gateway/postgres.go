package main

import (
	"context"
	"fmt"

	"github.com/xmpptrack/xmpptrack/store"
	"github.com/xmpptrack/xmpptrack/store/postgres"
)

// openPostgres opens a PostgreSQL store: several gateways on one database
// serve one record.
func openPostgres(ctx context.Context, dsn string) (store.Store, func(), error) {
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("-store: PostgreSQL: %w", err)
	}
	return st, func() { st.Close() }, nil
}
